//! Chained logins (`refreshableToken.steps`): requests sent in order before the login request,
//! each offering the values it extracted to the later templates as
//! `{{ steps.<name>.<key> }}` (log in → session → token). The steps as compiled; the operator's
//! engine sends them.

use crate::extract::Locator;
use crate::flow::Step;

/// One compiled step of a chained login.
#[derive(Debug, Clone)]
pub struct ChainStep {
    /// The user's name for it: template variable prefix and label in errors.
    pub name: String,
    pub step: Step,
    pub extract: Vec<(String, Locator)>,
}

impl ChainStep {
    /// How errors and logs name the step.
    pub fn label(&self) -> String {
        format!("step {}", self.name)
    }
}

/// The template variable of a step's value (see [`crate::TemplateContext`]'s nesting of `steps.`).
pub fn variable(step: &str, key: &str) -> String {
    format!("steps.{step}.{key}")
}
