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
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', clientAuth: client_secret_jwt}",
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
    ), // Signed assertions and chained steps.
    (
        "jwtBearer grant without an assertion",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', grantType: jwtBearer}",
        Expect::Apply("oauth2.assertion is required by, and only used with, grantType jwtBearer"),
    ),
    (
        "client assertion without private_key_jwt",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', clientAssertion: {}}",
        Expect::Apply("oauth2.clientAssertion is required by, and only used with, clientAuth private_key_jwt"),
    ),
    (
        "assertion lifetime in words",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', grantType: jwtBearer, assertion: {lifetime: soon}}",
        Expect::Apply("lifetime must be a duration"),
    ),
    (
        "unknown signing algorithm",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', grantType: jwtBearer, assertion: {algorithm: HS256}}",
        Expect::Shape,
    ),
    (
        "chained step named with a dash",
        "credentialsRef: {name: c}\nrefreshableToken:\n  steps: [{name: log-in, url: 'https://x', extract: {a: {jsonPath: a}}}]\n  authorization: {url: 'https://x'}",
        Expect::Apply("a step name is a letter or underscore"),
    ),
    (
        "jwtBearer grant without its key in the credentials",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', grantType: jwtBearer, assertion: {claims: {iss: me}}}",
        Expect::Terminal("MissingCredential"),
    ),
    (
        "assertion setting exp itself",
        "credentialsRef: {name: c}\noauth2: {tokenUrl: 'https://x', grantType: jwtBearer, assertion: {claims: {exp: '1'}}}",
        Expect::Terminal("InvalidSpec"),
    ),
    (
        "GitHub app JWT valid for an hour",
        "credentialsRef: {name: c}\ngithubApp: {appId: '1', installationId: '2', assertion: {lifetime: 1h}}",
        Expect::Terminal("InvalidSpec"),
    ),
    (
        "a restart target with both name and selector",
        "credentialsRef: {name: c}\napiKey: {}\noutput: {rolloutRestart: [{kind: Deployment, name: a, selector: {matchLabels: {app: a}}}]}",
        Expect::Apply("rolloutRestart: set either name or selector"),
    ),
    (
        "a restart target with neither name nor selector",
        "credentialsRef: {name: c}\napiKey: {}\noutput: {rolloutRestart: [{kind: StatefulSet}]}",
        Expect::Apply("rolloutRestart: set either name or selector"),
    ),
    (
        "a restart target of a kind that cannot be restarted",
        "credentialsRef: {name: c}\napiKey: {}\noutput: {rolloutRestart: [{kind: CronJob, name: a}]}",
        Expect::Shape,
    ),
    (
        "chained step that extracts nothing",
        "credentialsRef: {name: c}\nrefreshableToken:\n  steps: [{name: login, url: 'https://x'}]\n  authorization: {url: 'https://x'}",
        Expect::Terminal("InvalidSpec"),
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

/// Resources that pass the schema but cannot work, and the reason each gets. The last two
/// are refused before any scheme runs.
fn runtime_refusals() -> Vec<(String, String, &'static str)> {
    let mut cases: Vec<(String, String, &'static str)> = CORPUS
        .iter()
        .filter_map(|(name, spec, expect)| match expect {
            Expect::Terminal(reason) => Some((name.to_string(), spec.to_string(), *reason)),
            _ => None,
        })
        .collect();
    cases.push((
        "credentials in another namespace".into(),
        "credentialsRef: {name: c, namespace: other}\napiKey: {}".into(),
        "CrossNamespaceReference",
    ));
    cases.push((
        "credentials Secret missing".into(),
        "credentialsRef: {name: missing}\napiKey: {}".into(),
        "CredentialsNotFound",
    ));
    cases
}

fn manifest(i: usize, spec: &str) -> String {
    let spec = spec.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n");
    format!(
        "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: t{i}, namespace: ns}}\nspec:\n{spec}\n"
    )
}

/// The same bad resource gets the same reason and message in local mode and in the
/// controller: both run the one shared pass.
#[tokio::test]
async fn a_bad_resource_gets_the_same_reason_and_message_in_local_mode_and_in_the_controller() {
    use connector_auth_operator::local::LocalRunner;
    use connector_auth_operator::reconcile::Action;
    use kube::api::{Api, PostParams};

    let cases = runtime_refusals();
    let tmp = tempfile::tempdir().unwrap();
    let mut docs: Vec<String> = cases.iter().enumerate().map(|(i, (_, s, _))| manifest(i, s)).collect();
    docs.push("apiVersion: v1\nkind: Secret\nmetadata: {name: c, namespace: ns}\nstringData: {unused: x}\n".into());
    std::fs::write(tmp.path().join("all.yaml"), docs.join("---\n")).unwrap();
    let out = tmp.path().join("out");
    let mut runner = LocalRunner::new(engine(), tmp.path().join("all.yaml"), out);
    let reports = runner.pass().await.unwrap();
    let local: Vec<(String, String)> = reports
        .iter()
        .map(|r| match &r.result {
            Err(failure) => (failure.reason.to_string(), failure.message.clone()),
            Ok(o) => match &o.action {
                Action::Failed { error } => (error.reason().to_string(), error.to_string()),
                other => panic!("{}: {other:?}", r.name),
            },
        })
        .collect();

    let server = api_server().await;
    let client = server.client();
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "c"}, "stringData": {"unused": "x"}})).unwrap();
    Api::namespaced(client.clone(), "ns")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let cas: Api<connector_auth_operator::api::ConnectorAuth> = Api::namespaced(client.clone(), "ns");
    // A few values the CRD's structural schema bounds (not its CEL rules) are refused at apply
    // time by an API server, but only at run time by local mode, which checks CEL rules only.
    let mut refused_at_apply = Vec::new();
    for (i, (name, spec, _)) in cases.iter().enumerate() {
        let doc: serde_json::Value = serde_saphyr::from_str(&manifest(i, spec)).unwrap();
        match cas
            .create(&PostParams::default(), &serde_json::from_value(doc).unwrap())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 422 => refused_at_apply.push(name.as_str()),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert_eq!(
        refused_at_apply,
        ["percentage out of range", "tripletex session days out of range"]
    );
    let op = support::operator::Operator::start(support::operator::Source::Url(server.url()), "op", false);
    for (i, (name, _, reason)) in cases.iter().enumerate() {
        if refused_at_apply.contains(&name.as_str()) {
            continue;
        }
        let in_cluster = eventually(10, name, || async {
            let ca = server.object("connectorauth.dev", "connectorauths", Some("ns"), &format!("t{i}"))?;
            let ready = ca["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready" && c["reason"] != "Pending")?
                .clone();
            Some((
                ready["reason"].as_str()?.to_string(),
                ready["message"].as_str()?.to_string(),
            ))
        })
        .await;
        assert_eq!(in_cluster.0, *reason, "{name}");
        assert_eq!(local[i], in_cluster, "{name}: local mode and the controller differ");
    }
    op.stop().await;
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
