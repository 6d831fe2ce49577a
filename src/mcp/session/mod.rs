//! Step 5 of the request path: sealed session ids. The upstream's `Mcp-Session-Id` never
//! reaches the client; the client gets an AEAD (AES-256-GCM) seal of it that names the
//! route and the caller it was issued to, and the gateway restores the upstream id only
//! for that route and that caller. Sealing is stateless: replicas that share the keys
//! serve each other's sessions.
//!
//! Owns the keys (validated and prepared once, at start-up), the wire format, sealing and
//! unsealing. It does not read headers, answer requests or count rejections: the caller
//! turns every [`UnsealError`] into 404 "session not found" and uses
//! [`UnsealError::reason`] as the metric label.
//!
//! # Why identity, not the token
//!
//! A session belongs to who the caller is — issuer + subject + OAuth client — not to the
//! bytes of the access token it happens to hold. Tokens are short-lived and refreshed in
//! the middle of a session; a refreshed token for the same user and client keeps the
//! session. A token for another user, or the same user through another client, does not
//! (a sealed id that leaks to another agent is useless to it). This is why [`Binding`] has
//! no token field.
//!
//! # Wire format
//!
//! ```text
//! v1.<key id>.<base64url, no padding: nonce (12) || ciphertext || tag (16)>
//! ```
//!
//! Every character is `[A-Za-z0-9_.-]`, inside the visible ASCII range (0x21–0x7E) the
//! MCP specification requires of session ids. The key id is in clear so the right key is
//! found without trial decryption; the AAD is the `v1.<key id>.` prefix, so neither the
//! version nor the key id can be swapped. The nonce is 96 random bits per seal (with
//! random nonces, one key should seal well under 2³² ids — rotate keys long before).
//!
//! The plaintext is fixed-size apart from the upstream id:
//!
//! ```text
//! issued_at (u64, big endian) || SHA-256(route) (32) || SHA-256(identity) (32) || upstream id
//! ```
//!
//! Route and identity are stored as domain-separated, length-prefixed digests, so a long
//! issuer or subject cannot make a seal fail or grow the header, and a mismatch after
//! decryption still tells [`UnsealError::WrongRoute`] from [`UnsealError::WrongIdentity`].
//!
//! # Time
//!
//! Time is only looked at when a maximum age is configured: an id older than it, or issued
//! more than [`MAX_CLOCK_SKEW_SECS`] in the future (a replica's clock is off), is
//! [`UnsealError::Expired`]. Without a maximum age, clocks do not matter.

use std::fmt;
use std::time::Duration;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, Engine};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::digest::{Context, Digest, SHA256, SHA256_OUTPUT_LEN};
use ring::rand::{SecureRandom, SystemRandom};

#[cfg(test)]
mod tests;

/// Length of a session key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Longest upstream session id the gateway seals.
pub const MAX_UPSTREAM_ID_LEN: usize = 1024;
/// Longest sealed id the gateway tries to open; anything longer is [`UnsealError::Malformed`].
pub const MAX_SEALED_LEN: usize = 4096;
/// How far in the future an `issued_at` may lie before it counts as expired.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

const VERSION: &str = "v1";
const MAX_KEY_ID_LEN: usize = 16;
/// Keys with fewer distinct byte values than this are refused as typed, not random.
const MIN_DISTINCT_KEY_BYTES: usize = 8;
const TAG_LEN: usize = 16;
const ISSUED_AT_LEN: usize = 8;
const HEADER_LEN: usize = ISSUED_AT_LEN + 2 * SHA256_OUTPUT_LEN;

/// Sealed ids are unpadded base64url.
const SEALED_B64: GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

// The largest id `seal` can produce must be one `unseal` accepts.
const _: () = {
    let payload = NONCE_LEN + HEADER_LEN + MAX_UPSTREAM_ID_LEN + TAG_LEN;
    let prefix = VERSION.len() + 1 + MAX_KEY_ID_LEN + 1;
    assert!(prefix + payload.div_ceil(3) * 4 <= MAX_SEALED_LEN);
};

/// Session keys, prepared once: the first seals, all open (rotation).
pub struct SessionKeys {
    /// Never empty; `keys[0]` seals.
    keys: Vec<(String, LessSafeKey)>,
    rng: SystemRandom,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SessionKeys")
            .field("ids", &ids)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// `keys`: (id, 32 raw bytes), the sealing key first. Refuses an empty list, ids that
    /// are duplicated or not `[A-Za-z0-9_-]{1,16}`, keys of the wrong length, and keys that
    /// are plainly not random (all zero, fewer than 8 distinct byte values, or the same
    /// secret under two ids). Messages name the key by its id (or position, when the id
    /// itself is bad), never by its material.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Result<SessionKeys, String> {
        if keys.is_empty() {
            return Err("no session keys configured".to_string());
        }
        for (i, (id, secret)) in keys.iter().enumerate() {
            if !valid_key_id(id) {
                // Not echoed: a malformed id may be a secret pasted into the wrong field.
                return Err(format!(
                    "session key #{}: the id must be 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ -",
                    i + 1
                ));
            }
            if keys.iter().take(i).any(|(other, _)| other == id) {
                return Err(format!("session key id {id:?} is used twice"));
            }
            if secret.len() != KEY_LEN {
                return Err(format!(
                    "session key {id:?} is {} bytes, expected {KEY_LEN}",
                    secret.len()
                ));
            }
            if secret.iter().all(|&b| b == 0) {
                return Err(format!("session key {id:?} is all zero bytes"));
            }
            if distinct_bytes(secret) < MIN_DISTINCT_KEY_BYTES {
                return Err(format!(
                    "session key {id:?} is not random (fewer than {MIN_DISTINCT_KEY_BYTES} distinct byte values); generate one with `drawbridge keygen`"
                ));
            }
            if let Some((other, _)) = keys.iter().take(i).find(|(_, s)| s == secret) {
                return Err(format!(
                    "session keys {other:?} and {id:?} have the same secret"
                ));
            }
        }
        let mut prepared = Vec::with_capacity(keys.len());
        for (id, secret) in keys {
            let unbound = UnboundKey::new(&AES_256_GCM, &secret)
                .map_err(|_| format!("session key {id:?} was refused by AES-256-GCM"))?;
            prepared.push((id, LessSafeKey::new(unbound)));
        }
        Ok(SessionKeys {
            keys: prepared,
            rng: SystemRandom::new(),
        })
    }

    /// Decodes a 32-byte key written in base64, standard or url-safe alphabet, padded or
    /// not; surrounding whitespace (a trailing newline in a file) is ignored. The error
    /// never contains the input.
    pub fn decode_key(text: &str) -> Result<Vec<u8>, String> {
        const INDIFFERENT: GeneralPurposeConfig =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        const STANDARD_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, INDIFFERENT);
        const URL_SAFE_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, INDIFFERENT);

        let text = text.trim();
        let bytes = STANDARD_ANY
            .decode(text)
            .or_else(|_| URL_SAFE_ANY.decode(text))
            .map_err(|_| "session key is not valid base64".to_string())?;
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "session key decodes to {} bytes, expected {KEY_LEN}",
                bytes.len()
            ));
        }
        Ok(bytes)
    }

    fn sealing_key(&self) -> Option<&(String, LessSafeKey)> {
        self.keys.first()
    }

    fn opening_key(&self, id: &str) -> Option<&LessSafeKey> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key)
    }
}

/// A key check value: 8 hex digits that name a session key's secret without revealing
/// it (the first 4 bytes of a domain-separated SHA-256 of the 32 random bytes). Replicas
/// that share a key show the same check; replicas whose key has the same id but another
/// secret do not, which AES-GCM alone cannot tell from tampering. Exported as
/// `drawbridge_session_key_info`.
pub fn key_check(secret: &[u8]) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"drawbridge session key check v1\0");
    ctx.update(secret);
    let digest = ctx.finish();
    digest
        .as_ref()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A freshly generated key: 32 random bytes, base64 (standard, padded). For
/// `drawbridge keygen`.
pub fn generate_key() -> Result<String, String> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "the system random number generator failed".to_string())?;
    Ok(STANDARD.encode(key))
}

/// Who a session belongs to: the route it was opened on and the caller's stable identity.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub route: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub client_id: Option<&'a str>,
}

/// The digest of a route's name that seals bind; computed once per route (at start-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDigest([u8; SHA256_OUTPUT_LEN]);

impl RouteDigest {
    pub fn of(route: &str) -> RouteDigest {
        let mut ctx = Context::new(&SHA256);
        ctx.update(b"drawbridge session route v1\0");
        update_field(&mut ctx, route);
        RouteDigest(digest_bytes(ctx.finish()))
    }
}

/// The digest of a caller's identity that seals bind; computed once per verified token
/// (it travels with the principal), so a request with a cached token hashes nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityDigest([u8; SHA256_OUTPUT_LEN]);

impl IdentityDigest {
    /// The client id is optional, so its presence is hashed too: "no client" and an empty
    /// client id are different identities.
    pub fn of(issuer: &str, subject: &str, client_id: Option<&str>) -> IdentityDigest {
        let mut ctx = Context::new(&SHA256);
        ctx.update(b"drawbridge session identity v1\0");
        update_field(&mut ctx, issuer);
        update_field(&mut ctx, subject);
        match client_id {
            Some(client_id) => {
                ctx.update(&[1]);
                update_field(&mut ctx, client_id);
            }
            None => ctx.update(&[0]),
        }
        IdentityDigest(digest_bytes(ctx.finish()))
    }

    /// The caller on a public route: no issuer, no subject, no client.
    pub fn anonymous() -> IdentityDigest {
        static ANONYMOUS: std::sync::LazyLock<IdentityDigest> =
            std::sync::LazyLock::new(|| IdentityDigest::of("", "", None));
        *ANONYMOUS
    }
}

/// What a seal binds: a [`Binding`] in the form the wire format stores. `seal` and `open`
/// take either; the proxy passes digests it computed earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub route: RouteDigest,
    pub identity: IdentityDigest,
}

impl From<&Binding<'_>> for Digests {
    fn from(b: &Binding<'_>) -> Digests {
        Digests {
            route: RouteDigest::of(b.route),
            identity: IdentityDigest::of(b.issuer, b.subject, b.client_id),
        }
    }
}

fn digest_bytes(d: Digest) -> [u8; SHA256_OUTPUT_LEN] {
    let mut out = [0u8; SHA256_OUTPUT_LEN];
    out.copy_from_slice(d.as_ref());
    out
}

/// Why an upstream session id was not sealed. The caller answers 502: the upstream sent
/// something the gateway will not hand on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// Longer than [`MAX_UPSTREAM_ID_LEN`].
    UpstreamIdTooLong,
    /// Empty, or not visible ASCII (0x21–0x7E) as the MCP specification requires.
    UpstreamIdInvalid,
    /// The system random number generator or the cipher failed.
    Crypto,
}

impl SealError {
    /// Short label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            SealError::UpstreamIdTooLong => "upstream_id_too_long",
            SealError::UpstreamIdInvalid => "upstream_id_invalid",
            SealError::Crypto => "crypto",
        }
    }
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::UpstreamIdTooLong => "upstream session id is too long",
            SealError::UpstreamIdInvalid => "upstream session id is empty or not visible ASCII",
            SealError::Crypto => "sealing the session id failed",
        })
    }
}

impl std::error::Error for SealError {}

/// Why a sealed id was not accepted. Every variant means "session not found" (404) to
/// the client; the variant is for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsealError {
    /// Not something the gateway produced: wrong shape, version, length or encoding.
    Malformed,
    /// Sealed with a key that is not (or no longer) configured.
    UnknownKey,
    /// Failed authentication: altered, truncated within the payload, or forged.
    Tampered,
    /// Genuine, but issued on another route.
    WrongRoute,
    /// Genuine, but issued to another issuer, subject or client.
    WrongIdentity,
    /// Older than the maximum age, or issued implausibly far in the future.
    Expired,
}

impl UnsealError {
    /// Label for `drawbridge_session_rejections_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            UnsealError::Malformed => "malformed",
            UnsealError::UnknownKey => "unknown_key",
            UnsealError::Tampered => "tampered",
            UnsealError::WrongRoute => "wrong_route",
            UnsealError::WrongIdentity => "wrong_identity",
            UnsealError::Expired => "expired",
        }
    }
}

impl fmt::Display for UnsealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session not found ({})", self.reason())
    }
}

impl std::error::Error for UnsealError {}

/// Seals `upstream_id` for `binding` with the first key.
pub fn seal(
    keys: &SessionKeys,
    upstream_id: &str,
    binding: impl Into<Digests>,
    issued_at_unix: u64,
) -> Result<String, SealError> {
    if upstream_id.len() > MAX_UPSTREAM_ID_LEN {
        return Err(SealError::UpstreamIdTooLong);
    }
    if upstream_id.is_empty() || !upstream_id.bytes().all(is_visible_ascii) {
        return Err(SealError::UpstreamIdInvalid);
    }
    seal_payload(
        keys,
        &SESSION_ID,
        upstream_id.as_bytes(),
        binding.into(),
        issued_at_unix,
    )
}

/// What a sealed value is for. Its version is the first part of the wire form and, with
/// the key id, the AAD: a value sealed for one purpose never opens as another (a sealed
/// session id presented as a `requestState`, or the other way round, is
/// [`UnsealError::Malformed`]; with its prefix swapped, [`UnsealError::Tampered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purpose {
    /// `[a-z0-9]+`, distinct per purpose.
    pub version: &'static str,
    /// Longest payload sealed; longer is [`SealError::UpstreamIdTooLong`].
    pub max_payload: usize,
    /// Longest sealed value opened; longer is [`UnsealError::Malformed`].
    pub max_sealed: usize,
}

/// Sealed `Mcp-Session-Id` values (and the legacy transport's session parameter).
pub const SESSION_ID: Purpose = Purpose {
    version: VERSION,
    max_payload: MAX_UPSTREAM_ID_LEN,
    max_sealed: MAX_SEALED_LEN,
};

/// Seals `payload` for `bound` with the first key, under `purpose`. Checks only the
/// length: what a payload may contain is the purpose's caller's business.
pub fn seal_payload(
    keys: &SessionKeys,
    purpose: &Purpose,
    payload_in: &[u8],
    bound: Digests,
    issued_at_unix: u64,
) -> Result<String, SealError> {
    if payload_in.len() > purpose.max_payload {
        return Err(SealError::UpstreamIdTooLong);
    }
    let (key_id, key) = keys.sealing_key().ok_or(SealError::Crypto)?;
    let prefix = format!("{}.{key_id}.", purpose.version);

    let mut nonce = [0u8; NONCE_LEN];
    keys.rng.fill(&mut nonce).map_err(|_| SealError::Crypto)?;

    let mut payload = Vec::with_capacity(NONCE_LEN + HEADER_LEN + payload_in.len() + TAG_LEN);
    payload.extend_from_slice(&nonce);
    payload.extend_from_slice(&issued_at_unix.to_be_bytes());
    payload.extend_from_slice(&bound.route.0);
    payload.extend_from_slice(&bound.identity.0);
    payload.extend_from_slice(payload_in);
    let plaintext = payload.get_mut(NONCE_LEN..).ok_or(SealError::Crypto)?;
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(prefix.as_bytes()),
            plaintext,
        )
        .map_err(|_| SealError::Crypto)?;
    payload.extend_from_slice(tag.as_ref());

    let mut out = prefix;
    SEALED_B64.encode_string(&payload, &mut out);
    Ok(out)
}

/// A sealed id younger than this, made with the current sealing key, is handed back as
/// it is when the upstream answers with the same session id (see [`Opened::reusable`]).
pub const RESEAL_AFTER_SECS: u64 = 60;

/// What opening a sealed id gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The upstream's session id.
    pub upstream_id: String,
    /// Sealed with the key that seals now, less than [`RESEAL_AFTER_SECS`] ago: sealing
    /// the same upstream id again for the same caller would give nothing new (a fresh
    /// nonce, a slightly later `issued_at`), so the answer may carry this one. Older ids,
    /// and ids sealed with a key being rotated out, are sealed afresh.
    pub reusable: bool,
}

/// Opens a sealed id presented with a request and returns the upstream session id, if it
/// was sealed by one of `keys` for this exact `binding` (and is young enough). The
/// request path uses [`open`]; this is its short form for tests.
#[cfg(test)]
pub fn unseal(
    keys: &SessionKeys,
    sealed: &str,
    binding: impl Into<Digests>,
    now_unix: u64,
    max_age: Option<Duration>,
) -> Result<String, UnsealError> {
    open(keys, sealed, binding, now_unix, max_age).map(|opened| opened.upstream_id)
}

/// Opens a sealed id presented with a request: the upstream session id, if it was sealed
/// by one of `keys` for this exact `binding` (and is young enough), and whether the
/// sealed id may be handed back unchanged.
pub fn open(
    keys: &SessionKeys,
    sealed: &str,
    binding: impl Into<Digests>,
    now_unix: u64,
    max_age: Option<Duration>,
) -> Result<Opened, UnsealError> {
    let opened = open_payload(keys, &SESSION_ID, sealed, binding.into(), now_unix, max_age)?;
    let upstream_id = opened.payload;
    if upstream_id.is_empty() || !upstream_id.iter().copied().all(is_visible_ascii) {
        return Err(UnsealError::Malformed);
    }
    let upstream_id = String::from_utf8(upstream_id).map_err(|_| UnsealError::Malformed)?;
    let issued_at = opened.issued_at;
    let young = issued_at <= now_unix && now_unix - issued_at < RESEAL_AFTER_SECS;
    Ok(Opened {
        upstream_id,
        reusable: opened.current_key && young,
    })
}

/// What [`open_payload`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedPayload {
    pub payload: Vec<u8>,
    pub issued_at: u64,
    /// Sealed with the key that seals now.
    pub current_key: bool,
}

/// Opens a value sealed under `purpose`, if one of `keys` sealed it for exactly `bound`
/// (and it is young enough).
pub fn open_payload(
    keys: &SessionKeys,
    purpose: &Purpose,
    sealed: &str,
    bound: Digests,
    now_unix: u64,
    max_age: Option<Duration>,
) -> Result<OpenedPayload, UnsealError> {
    if sealed.len() > purpose.max_sealed {
        return Err(UnsealError::Malformed);
    }
    let mut parts = sealed.splitn(3, '.');
    let (Some(version), Some(key_id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(UnsealError::Malformed);
    };
    if version != purpose.version || !valid_key_id(key_id) {
        return Err(UnsealError::Malformed);
    }
    let key = keys.opening_key(key_id).ok_or(UnsealError::UnknownKey)?;
    // Rejects '.', padding and non-canonical trailing bits as well as foreign characters.
    let mut payload = SEALED_B64
        .decode(encoded)
        .map_err(|_| UnsealError::Malformed)?;
    if payload.len() <= NONCE_LEN + HEADER_LEN + TAG_LEN {
        return Err(UnsealError::Malformed);
    }
    let (nonce, ciphertext) = payload
        .split_at_mut_checked(NONCE_LEN)
        .ok_or(UnsealError::Malformed)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| UnsealError::Malformed)?;
    // The AAD is the prefix exactly as presented; it was checked to be `<version>.<key id>.`.
    let prefix_len = version.len() + 1 + key_id.len() + 1;
    let aad = sealed
        .as_bytes()
        .get(..prefix_len)
        .ok_or(UnsealError::Malformed)?;
    let plain = key
        .open_in_place(nonce, Aad::from(aad), ciphertext)
        .map_err(|_| UnsealError::Tampered)?;

    let (issued_at, rest) = plain
        .split_first_chunk::<ISSUED_AT_LEN>()
        .ok_or(UnsealError::Malformed)?;
    let (route, rest) = rest
        .split_at_checked(SHA256_OUTPUT_LEN)
        .ok_or(UnsealError::Malformed)?;
    let (identity, inner) = rest
        .split_at_checked(SHA256_OUTPUT_LEN)
        .ok_or(UnsealError::Malformed)?;
    if route != &bound.route.0[..] {
        return Err(UnsealError::WrongRoute);
    }
    if identity != &bound.identity.0[..] {
        return Err(UnsealError::WrongIdentity);
    }
    let issued_at = u64::from_be_bytes(*issued_at);
    if let Some(max_age) = max_age {
        if issued_at > now_unix.saturating_add(MAX_CLOCK_SKEW_SECS)
            || Duration::from_secs(now_unix.saturating_sub(issued_at)) > max_age
        {
            return Err(UnsealError::Expired);
        }
    }
    Ok(OpenedPayload {
        payload: inner.to_vec(),
        issued_at,
        current_key: keys.sealing_key().is_some_and(|(id, _)| id == key_id),
    })
}

fn valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn distinct_bytes(bytes: &[u8]) -> usize {
    let mut seen = [false; 256];
    for &b in bytes {
        seen[usize::from(b)] = true;
    }
    seen.iter().filter(|&&s| s).count()
}

fn is_visible_ascii(b: u8) -> bool {
    (0x21..=0x7E).contains(&b)
}

/// Length-prefixed, so that field boundaries cannot shift ("ab" + "c" vs "a" + "bc").
fn update_field(ctx: &mut Context, field: &str) {
    ctx.update(&(field.len() as u64).to_be_bytes());
    ctx.update(field.as_bytes());
}
