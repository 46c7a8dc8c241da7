//! A corpus of malformed ConnectorAuths. Each is refused at apply time by the schema's CEL
//! rules with a readable message, or compiles/runs into a specific terminal error — never a
//! panic, never a transient error that would be retried in a loop.

mod support;

use connector_auth_operator::api::validate_document;
use support::*;

enum Expect {
    /// Refused at apply time; the message contains this.
    Apply(&'static str),
    /// Not valid YAML/JSON for the type at all (serde refuses it, as the API server's
    /// structural schema would).
    Shape,
    /// Accepted, then a terminal error with this reason.
    Terminal(&'static str),
}

const CORPUS: &[(&str, &str, Expect)] = &[
    (
        "no scheme",
        "credentialsRef: {name: c}",
        Expect::Apply("exactly one scheme"),
    ),
    (
        "two schemes",
        "credentialsRef: {name: c}\napiKey: {}\njwt: {login: {url: 'https://x'}}",
        Expect::Apply("exactly one scheme"),
    ),
    (
        "three schemes",
        "credentialsRef: {name: c}\napiKey: {}\ntripletex: {}\nsuperOffice: {}",
        Expect::Apply("exactly one scheme"),
    ),
    (
        "empty credentials name",
        "credentialsRef: {name: ''}\napiKey: {}",
        Expect::Apply("credentialsRef.name must not be empty"),
    ),
    (
        "both renewal forms",
        "credentialsRef: {name: c}\napiKey: {}\nrenewal: {renewBefore: 5m, renewBeforePercentage: 10}",
        Expect::Apply("either renewBefore or renewBeforePercentage"),
    ),
    (
        "negative renewBefore",
        "credentialsRef: {name: c}\napiKey: {}\nrenewal: {renewBefore: -5m}",
        Expect::Apply("renewBefore must be a duration"),
    ),
    (
        "words as duration",
        "credentialsRef: {name: c}\napiKey: {}\nrenewal: {refreshInterval: one hour}",
        Expect::Apply("refreshInterval must be a duration"),
    ),
    (
        "duration without unit",
        "credentialsRef: {name: c}\napiKey: {}\nrenewal: {refreshInterval: '60'}",
        Expect::Apply("refreshInterval must be a duration"),
    ),
    (
        "extract with two sources",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'https://x'}\n  accessToken: {jsonPath: a, header: b}",
        Expect::Apply("exactly one of jsonPath, header or cookie"),
    ),
    (
        "extract with no source",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'https://x'}\n  accessToken: {jwtClaim: sub}",
        Expect::Apply("exactly one of jsonPath, header or cookie"),
    ),
    (
        "body and form",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'https://x', body: a, form: {b: c}}",
        Expect::Apply("either body or form"),
    ),
    (
        "oauth2 without token URL",
        "credentialsRef: {name: c}\noauth2: {grantType: clientCredentials}",
        Expect::Apply("oauth2 needs tokenUrl"),
    ),
    (
        "unknown grant",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', grantType: implicit}",
        Expect::Shape,
    ),
    (
        "unknown method",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'https://x', method: DELETE}",
        Expect::Shape,
    ),
    (
        "unknown client auth",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', clientAuth: private_key_jwt}",
        Expect::Shape,
    ),
    (
        "percentage out of range",
        "credentialsRef: {name: c}\napiKey: {}\nrenewal: {renewBeforePercentage: 150}",
        Expect::Terminal("InvalidSpec"),
    ),
    (
        "bad JSONPath",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'https://x'}\n  accessToken: {jsonPath: '$[?('}",
        Expect::Terminal("InvalidSpec"),
    ),
    (
        "empty URL",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: ''}",
        Expect::Terminal("InvalidSpec"),
    ),
    (
        "template syntax error",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'https://x/{{ user'}",
        Expect::Terminal("TemplateError"),
    ),
    (
        "unknown template variable",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'https://x/?u={{ usr }}'}",
        Expect::Terminal("UndefinedVariable"),
    ),
    (
        "missing credential key in output",
        "credentialsRef: {name: c}\napiKey: {}",
        Expect::Terminal("UndefinedVariable"),
    ),
    (
        "not a URL",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'not a url'}",
        Expect::Terminal("InvalidRequest"),
    ),
    (
        "file URL",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'file:///etc/passwd'}",
        Expect::Terminal("InvalidRequest"),
    ),
    (
        "metadata URL",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'http://169.254.169.254/latest/meta-data'}",
        Expect::Terminal("TokenUrlForbidden"),
    ),
    (
        "header with newline",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'http://127.0.0.1:9/x', headers: {X-A: \"a\\nb\"}}",
        Expect::Terminal("InvalidRequest"),
    ),
    (
        "invalid header name",
        "credentialsRef: {name: c}\nrefreshableToken:\n  authorization: {url: 'http://127.0.0.1:9/x', headers: {'bad header': a}}",
        Expect::Terminal("InvalidRequest"),
    ),
    (
        "refresh-token grant without refresh token",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', grantType: refreshToken}",
        Expect::Terminal("MissingCredential"),
    ),
    (
        "authorization code without consent URL",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', grantType: authorizationCode}",
        Expect::Terminal("InvalidSpec"),
    ),
    (
        "template overwriting a reserved key",
        "credentialsRef: {name: c}\napiKey: {key: k}\noutput: {template: {access_token: x}}",
        Expect::Terminal("InvalidSpec"),
    ),
    (
        "tripletex session days out of range",
        "credentialsRef: {name: c}\ntripletex: {sessionDays: 0}",
        Expect::Terminal("InvalidSpec"),
    ),
    (
        "CA bundle and insecureSkipVerify",
        "credentialsRef: {name: c}\napiKey: {}\ntls: {caBundleRef: {kind: Secret, name: ca}, insecureSkipVerify: true}",
        Expect::Apply("set either tls.caBundleRef or tls.insecureSkipVerify"),
    ),
    (
        "CA bundle without a name",
        "credentialsRef: {name: c}\napiKey: {}\ntls: {caBundleRef: {kind: ConfigMap, name: ''}}",
        Expect::Apply("tls.caBundleRef.name must not be empty"),
    ),
    (
        "CA bundle with an empty key",
        "credentialsRef: {name: c}\napiKey: {}\ntls: {caBundleRef: {kind: ConfigMap, name: ca, key: ''}}",
        Expect::Apply("tls.caBundleRef.key must not be empty"),
    ),
    (
        "client certificate without a name",
        "credentialsRef: {name: c}\napiKey: {}\ntls: {clientCertificateRef: {name: ''}}",
        Expect::Apply("tls.clientCertificateRef.name must not be empty"),
    ),
    (
        "output Secret name with capitals",
        "credentialsRef: {name: c}\napiKey: {}\noutput: {secretName: Crm_Token}",
        Expect::Apply("output.secretName must be a valid Secret name"),
    ),
    (
        "output Secret name ending with a dot",
        "credentialsRef: {name: c}\napiKey: {}\noutput: {secretName: crm.}",
        Expect::Apply("output.secretName must be a valid Secret name"),
    ),
    (
        "template key with a space",
        "credentialsRef: {name: c}\napiKey: {}\noutput: {template: {'api key': x}}",
        Expect::Apply("output.template keys must be valid Secret keys"),
    ),
    (
        "template key starting with two dots",
        "credentialsRef: {name: c}\napiKey: {}\noutput: {template: {'..data': x}}",
        Expect::Apply("output.template keys must be valid Secret keys"),
    ),
    (
        "extracted value under a key with a slash",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', extras: {'a/b': {jsonPath: a}}}",
        Expect::Apply("extras keys must be valid Secret keys"),
    ),
    (
        "CA bundle from an unknown kind",
        "credentialsRef: {name: c}\napiKey: {}\ntls: {caBundleRef: {kind: Node, name: ca}}",
        Expect::Shape,
    ),
    (
        "CA bundle without a kind",
        "credentialsRef: {name: c}\napiKey: {}\ntls: {caBundleRef: {name: ca}}",
        Expect::Shape,
    ),
];

#[tokio::test]
async fn every_malformed_spec_is_refused_clearly() {
    assert!(CORPUS.len() >= 25);
    for (name, spec_yaml, expect) in CORPUS {
        let doc_yaml = format!(
            "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: t, namespace: ns}}\nspec:\n{}",
            spec_yaml
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let doc: serde_json::Value = serde_saphyr::from_str(&doc_yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let applied = validate_document(&doc);
        match expect {
            Expect::Apply(msg) => {
                let err = applied.expect_err(name);
                assert!(err.contains(msg), "{name}: {err}");
            }
            Expect::Shape => {
                assert!(applied.is_ok(), "{name}: {applied:?}");
                let parsed = serde_json::from_value::<connector_auth_operator::api::ConnectorAuth>(doc);
                assert!(parsed.is_err(), "{name}: accepted an unknown enum value");
            }
            Expect::Terminal(reason) => {
                assert!(applied.is_ok(), "{name}: refused at apply time: {applied:?}");
                let spec = serde_json::from_value::<connector_auth_operator::api::ConnectorAuth>(doc)
                    .unwrap()
                    .spec;
                let err = issue_with(&engine(), &spec, &creds(&[]), None).await.expect_err(name);
                assert_eq!(err.reason(), *reason, "{name}: {err}");
                assert!(
                    !err.is_transient(),
                    "{name}: a transient error would be retried in a loop"
                );
                assert!(!err.to_string().is_empty());
            }
        }
    }
}

#[test]
fn valid_secret_names_and_keys_are_accepted() {
    let doc: serde_json::Value = serde_saphyr::from_str(
        "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {name: t, namespace: ns}\nspec:\n  \
         credentialsRef: {name: c}\n  oauth2: {tokenUrl: 'https://x', extras: {instance_url: {jsonPath: a}}}\n  \
         output: {secretName: crm.token-1, template: {KEY_name.1: x, a-b: y}}",
    )
    .unwrap();
    validate_document(&doc).unwrap();
}

#[test]
fn an_output_secret_name_over_253_characters_is_refused() {
    let doc = |name: &str| -> serde_json::Value {
        serde_saphyr::from_str(&format!(
            "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: t, namespace: ns}}\n\
             spec:\n  credentialsRef: {{name: c}}\n  apiKey: {{}}\n  output: {{secretName: {name}}}"
        ))
        .unwrap()
    };
    validate_document(&doc(&"a".repeat(253))).unwrap();
    let err = validate_document(&doc(&"a".repeat(254))).unwrap_err();
    assert!(err.contains("output.secretName must be a valid Secret name"), "{err}");
}
