//! `apiKey`: no token endpoint; the key from the credentials is rendered into the output
//! (WooCommerce basic auth, Wix `Authorization`).

use crate::api;
use crate::engine::flow::{Flow, Tmpl, base_flow};

pub(crate) fn compile(s: &api::ApiKey) -> Flow {
    let mut flow = base_flow("apiKey");
    flow.static_token = Some(Tmpl::new(
        "spec.apiKey.key",
        s.key.as_deref().unwrap_or("{{ api_key }}"),
    ));
    flow.default_token_type = "ApiKey";
    flow.output.header_value = Tmpl::new("spec.output.header.value", "{{ token_format }}");
    flow
}
