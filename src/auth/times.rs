//! The one check of a token's times, for every way a token is verified: a JWT's claims,
//! an introspection answer, and a cached verification presented again. `exp`, `nbf` and
//! `iat` are Unix seconds; each comparison allows the issuer's `leeway` for clock skew.
//!
//! Owns the rules (expired, not yet valid, issued in the future, `exp` required or not);
//! does not read tokens or clocks — callers pass what they read and `now`.

use super::jwt::{Claims, TokenError};

/// The times a token (or an answer about it) states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenTimes {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl TokenTimes {
    /// The times a JWT states, for [`check_times`] (which requires `exp` of a JWT).
    pub fn of_jwt(claims: &Claims) -> TokenTimes {
        TokenTimes {
            exp: claims.exp,
            nbf: claims.nbf,
            iat: claims.iat,
        }
    }
}

/// Whether a token without `exp` is refused. A JWT must carry one; an introspection
/// answer may omit it (RFC 7662 §2.2), and its verification is then cached no longer
/// than the issuer's `cache_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingExp {
    Refused,
    Allowed,
}

/// Expired past `exp + leeway`, not valid before `nbf - leeway`, issued after
/// `now + leeway`: refused, in that order. Arithmetic saturates, so no stated time can
/// wrap a comparison around.
pub fn check_times(
    times: TokenTimes,
    missing_exp: MissingExp,
    now: i64,
    leeway: i64,
) -> Result<(), TokenError> {
    match times.exp {
        None if missing_exp == MissingExp::Refused => return Err(TokenError::MissingClaim),
        None => {}
        Some(exp) if now > exp.saturating_add(leeway) => return Err(TokenError::Expired),
        Some(_) => {}
    }
    if times
        .nbf
        .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
    {
        return Err(TokenError::NotYetValid);
    }
    if times
        .iat
        .is_some_and(|iat| now.saturating_add(leeway) < iat)
    {
        return Err(TokenError::IssuedInFuture);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn times(exp: Option<i64>, nbf: Option<i64>, iat: Option<i64>) -> TokenTimes {
        TokenTimes { exp, nbf, iat }
    }

    #[test]
    fn expiry_is_allowed_the_leeway_and_no_more() {
        let at = |exp| check_times(times(Some(exp), None, None), MissingExp::Refused, NOW, 30);
        assert_eq!(at(NOW + 1), Ok(()));
        assert_eq!(at(NOW), Ok(()));
        assert_eq!(at(NOW - 30), Ok(()));
        assert_eq!(at(NOW - 31), Err(TokenError::Expired));
        let strict = check_times(
            times(Some(NOW - 1), None, None),
            MissingExp::Refused,
            NOW,
            0,
        );
        assert_eq!(strict, Err(TokenError::Expired));
    }

    #[test]
    fn a_missing_exp_is_refused_unless_allowed() {
        let none = times(None, None, None);
        assert_eq!(
            check_times(none, MissingExp::Refused, NOW, 30),
            Err(TokenError::MissingClaim)
        );
        assert_eq!(check_times(none, MissingExp::Allowed, NOW, 30), Ok(()));
        // Allowed to lack `exp`, an answer is still held to `nbf` and `iat`.
        assert_eq!(
            check_times(
                times(None, Some(NOW + 31), None),
                MissingExp::Allowed,
                NOW,
                30
            ),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check_times(
                times(None, None, Some(NOW + 31)),
                MissingExp::Allowed,
                NOW,
                30
            ),
            Err(TokenError::IssuedInFuture)
        );
    }

    #[test]
    fn not_before_in_the_future_is_refused_past_the_leeway() {
        let at = |nbf| {
            check_times(
                times(Some(NOW + 100), Some(nbf), None),
                MissingExp::Refused,
                NOW,
                30,
            )
        };
        assert_eq!(at(NOW), Ok(()));
        assert_eq!(at(NOW + 30), Ok(()));
        assert_eq!(at(NOW + 31), Err(TokenError::NotYetValid));
    }

    #[test]
    fn issued_in_the_future_is_refused_past_the_leeway() {
        let at = |iat| {
            check_times(
                times(Some(NOW + 100), None, Some(iat)),
                MissingExp::Refused,
                NOW,
                30,
            )
        };
        assert_eq!(at(NOW - 5), Ok(()));
        assert_eq!(at(NOW + 30), Ok(()));
        assert_eq!(at(NOW + 31), Err(TokenError::IssuedInFuture));
    }

    #[test]
    fn extreme_times_do_not_wrap() {
        let far = times(Some(i64::MAX), Some(i64::MIN), Some(i64::MIN));
        assert_eq!(
            check_times(far, MissingExp::Refused, i64::MAX, i64::MAX),
            Ok(())
        );
        assert_eq!(
            check_times(
                times(Some(i64::MIN), None, None),
                MissingExp::Refused,
                0,
                30
            ),
            Err(TokenError::Expired)
        );
    }
}
