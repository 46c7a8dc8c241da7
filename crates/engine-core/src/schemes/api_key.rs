//! `apiKey`: no token endpoint; the key from the credentials is rendered into the output
//! (WooCommerce basic auth, Wix `Authorization`).

use crate::flow::{Flow, Tmpl, base_flow};
use crate::spec;

pub(crate) fn compile(s: &spec::ApiKey) -> Flow {
    let mut flow = base_flow();
    flow.static_token = Some(Tmpl::new(
        "spec.apiKey.key",
        s.key.as_deref().unwrap_or("{{ api_key }}"),
    ));
    flow.default_token_type = "ApiKey";
    flow.output.header_value = Tmpl::new("spec.output.header.value", "{{ token_format }}");
    flow
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::flow;

    #[test]
    fn the_key_is_read_from_api_key_and_published_as_is() {
        let f = flow(json!({"apiKey": {}}));
        assert_eq!(f.scheme, "apiKey");
        assert_eq!(f.static_token.as_ref().unwrap().source, "{{ api_key }}");
        assert!(f.login.is_none() && f.refresh.is_none(), "nothing is sent");
        assert_eq!(f.default_token_type, "ApiKey");
        assert_eq!(f.output.header_value.source, "{{ token_format }}");
    }
}
