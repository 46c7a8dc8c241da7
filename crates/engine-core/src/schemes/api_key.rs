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
