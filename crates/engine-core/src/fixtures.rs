//! Fixtures of the core's unit tests: a scheme block from JSON, compiled as the engine would
//! compile it, and the parts of a step tests look at.

use crate::flow::{Body, Flow, Step};
use crate::spec::{Scheme, Spec};
use crate::{EngineError, Templates, compile};

/// The scheme of `{"<block>": {...}}`.
pub fn scheme(spec: serde_json::Value) -> Scheme {
    serde_json::from_value(spec).expect("a scheme block")
}

/// `{"<block>": {...}}` compiled with every other setting at its default.
pub fn flow(spec: serde_json::Value) -> Flow {
    compile(&Spec::new(&scheme(spec)), &Templates::new()).expect("compiles")
}

/// Why `{"<block>": {...}}` does not compile.
pub fn refused(spec: serde_json::Value) -> EngineError {
    compile(&Spec::new(&scheme(spec)), &Templates::new()).expect_err("refused")
}

/// A step's form fields as `(name, template)`.
pub fn form(step: &Step) -> Vec<(&str, &str)> {
    match &step.body {
        Body::Form(fields) => fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.source.as_str()))
            .collect(),
        _ => vec![],
    }
}
