//! The controller as the host of consent callbacks: where a callback finds its resource, where
//! a consent's outcome is reported, and which replica a standby hands a callback to.

use kube::api::Api;

use super::context::Context;
use super::report;
use crate::api::ConnectorAuth;
use crate::reconcile::callback::{Consent, ConsentHost};
use crate::reconcile::{Core, StoreError};

impl ConsentHost for Context {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn resource(&self, namespace: &str, name: &str) -> Result<Option<ConnectorAuth>, StoreError> {
        Api::<ConnectorAuth>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| StoreError::new(format!("reading ConnectorAuth {namespace}/{name}"), e))
    }

    async fn consented(&self, ca: &ConnectorAuth, consent: Consent<'_>) {
        report::consent(self, ca, consent).await;
    }

    async fn leader_callback(&self, resource: Option<(String, String)>) -> Option<String> {
        let election = self.election.as_ref()?;
        let shard = resource.map_or(0, |(ns, name)| {
            crate::reconcile::shard_of(&ns, &name, self.core.lead.shards())
        });
        super::leader::holder_callback(
            &self.client,
            election,
            self.core.lead.shards(),
            shard,
            &self.config.identity,
        )
        .await
    }
}
