//! `issuers[].claims`: where an issuer's tokens carry who is calling and what they may
//! do. Providers differ: Entra ID names the user in `oid` and grants app roles in
//! `roles`, Okta names the client in `cid`, Keycloak puts roles under
//! `realm_access.roles`, Auth0 grants API permissions in `permissions`.

use crate::policy::ClaimName;

/// How the subject, the client and the granted permissions are read from a token's
/// claims (a JWT's, or an introspection answer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// The subject claim; a token without it (as a string) is refused.
    pub subject: ClaimName,
    /// Client claims in order; the first present (as a string) names the client.
    pub client: Vec<ClaimName>,
    /// Claims whose values are granted like scopes, beside `scope` and `scp`.
    pub permissions: Vec<PermissionClaim>,
}

/// A claim whose values (a string, or an array of strings) are granted as scopes,
/// each with `prefix` in front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionClaim {
    pub claim: ClaimName,
    pub prefix: String,
}

/// The default subject claim.
pub const DEFAULT_SUBJECT_CLAIM: &str = "sub";
/// The default client claims, in order: RFC 9068 / RFC 8693 `client_id`, OpenID
/// Connect `azp` (Keycloak, Entra ID v2), Okta `cid`, Entra ID v1 `appid`.
pub const DEFAULT_CLIENT_CLAIMS: [&str; 4] = ["client_id", "azp", "cid", "appid"];

impl Default for ClaimMapping {
    fn default() -> ClaimMapping {
        ClaimMapping {
            subject: ClaimName::known(DEFAULT_SUBJECT_CLAIM),
            client: DEFAULT_CLIENT_CLAIMS
                .iter()
                .map(|n| ClaimName::known(n))
                .collect(),
            permissions: Vec::new(),
        }
    }
}
