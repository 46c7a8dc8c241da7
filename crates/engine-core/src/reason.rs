//! Why something happened, as one typed list. `as_str()` is at once the condition reason, the
//! Event reason and the `reason` metric label, so the three never drift apart.

use std::fmt;

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident,)*) => {
        /// Every reason the operator reports.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, for documentation and tests.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The reason of a stable PascalCase name, if there is one.
            pub fn parse(name: &str) -> Option<Reason> {
                Reason::ALL.iter().copied().find(|r| r.as_str() == name)
            }

            /// The stable PascalCase name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => stringify!($variant),)*
                }
            }
        }
    };
}

reasons! {
    // Why a token was requested.
    /// No token has been issued yet.
    NoToken,
    /// The scheme, renewal policy or credentials changed since the token was issued.
    InputsChanged,
    /// The token expired before it could be renewed.
    Expired,
    /// The renewal time (chosen at issuance) has come.
    RenewalDue,
    /// A person granted consent and the authorization code was exchanged.
    Authorized,
    /// The refresh token would have lain unused for 90% of `renewal.refreshTokenIdleLimit`.
    KeepAlive,
    /// Someone asked for a renewal (`kubectl connectorauth renew`, the `connectorauth.dev/renew`
    /// annotation).
    RenewRequested,

    // What the resource's conditions say when all is well.
    /// A valid token is published.
    TokenValid,
    /// No token yet and no failure either.
    Pending,
    /// `spec.tls.insecureSkipVerify` is set.
    InsecureSkipVerify,

    // The `Verified` condition (`spec.verify`).
    /// The provider accepted the published credential (a 2xx answer).
    VerificationSucceeded,
    /// The provider refused the published credential (a 4xx answer other than 408 and 429).
    VerificationRejected,
    /// The verification got no verdict on the credential: a 3xx, 5xx, 408 or 429 answer.
    VerificationFailed,

    // Routine Events.
    /// A token was issued for a new resource or after a change.
    Issued,
    /// A token was obtained after failures.
    Recovered,
    /// The provider sent the person back with an error instead of consent.
    ConsentDenied,
    /// A consent link was used twice or after a newer one replaced it.
    ConsentReplayed,
    /// A Secret left by an earlier resource of the same name was replaced, unread.
    StaleSecretReplaced,
    /// A workload of `output.rolloutRestart` was restarted.
    RolloutRestarted,
    /// A workload of `output.rolloutRestart` could not be restarted (missing, or not allowed).
    RolloutRestartFailed,
    /// The tokens were revoked at `oauth2.revocationUrl` on delete.
    Revoked,
    /// Revocation on delete failed or timed out; the resource was deleted all the same.
    RevocationFailed,

    // Refusals: the resource cannot be attempted as it stands.
    /// `credentialsRef.namespace` names another namespace.
    CrossNamespaceReference,
    /// The credentials Secret does not exist.
    CredentialsNotFound,
    /// `spec.provider` names neither a ClusterConnectorAuthProvider nor a built-in provider.
    ProviderNotFound,
    /// `spec.serviceAccountToken` names a ServiceAccount that does not exist.
    ServiceAccountNotFound,
    /// `spec.serviceAccountToken` names a ServiceAccount whose `connectorauth.dev/connectorauths`
    /// annotation does not list this ConnectorAuth: no token is requested for it.
    ServiceAccountNotAllowed,
    /// A Secret the resource would write belongs to someone else.
    SecretOwnedElsewhere,
    /// The API server refused a Secret write as invalid.
    SecretRejected,
    /// The API server refused a status write as invalid (e.g. an outdated CRD).
    StatusRejected,

    // Engine errors (see `EngineError::reason`).
    InvalidSpec,
    UndefinedVariable,
    TemplateError,
    MissingCredential,
    ReferenceNotFound,
    #[allow(clippy::upper_case_acronyms)]
    InvalidTLSMaterial,
    InvalidKey,
    InvalidRequest,
    TokenUrlForbidden,
    InvalidGrant,
    CredentialsRejected,
    RateLimited,
    ProviderUnavailable,
    Timeout,
    ConnectionFailed,
    #[allow(clippy::upper_case_acronyms)]
    TLSHandshakeFailed,
    RedirectNotFollowed,
    ResponseTooLarge,
    InvalidResponse,
    ValueNotFound,
    InvalidValue,
    AuthorizationRequired,
    RefreshTokenInDoubt,
    /// The refresh endpoint changed since the stored refresh token was issued; it is not
    /// sent to the new one.
    RefreshTokenEndpointChanged,
    /// A post-connect lookup (`oauth2.lookups`) failed; the token is kept and the lookup retried.
    LookupFailed,
    /// The provider refused the refresh token for good and the scheme cannot get another one
    /// by itself: a person must grant consent again (the link is in status) or put a new
    /// refresh token into the credentials. Nothing is sent to the provider meanwhile.
    RefreshTokenRevoked,

    // The operator's own failures.
    /// The private state could not be written or read.
    StateWriteFailed,
    /// The Kubernetes API refused or failed a request.
    KubeApi,
    /// The Lease was lost during a pass, which stopped before any token request.
    LeadershipLost,
    /// A pass ended in an internal error (a panic: a bug). Only that resource's pass ended;
    /// it is retried after a pause.
    InternalError,

    // Consent links that are not accepted.
    MalformedState,
    ForgedState,
    ExpiredState,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_pascal_case_names() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.chars().next().unwrap().is_ascii_uppercase(), "{s}");
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
            assert!(s.len() <= 128, "an Event reason is at most 128 characters");
        }
        assert_eq!(Reason::RenewalDue.to_string(), "RenewalDue");
    }
}
