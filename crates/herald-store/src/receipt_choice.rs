//! Which receipt configuration a receipt goes to: one rule for every engine, decided in
//! memory from the list of configurations (no query per receipt).

use std::sync::Arc;

/// One configuration as the choice sees it: (receipt_id, project_id, client_id).
pub type ConfigEntry = (Arc<str>, Arc<str>, Option<Arc<str>>);

/// Every configuration's place in the choice, oldest first.
#[derive(Debug, Default, Clone)]
pub struct ConfigIndex {
    /// Oldest first.
    configs: Vec<ConfigEntry>,
}

impl ConfigIndex {
    /// The index of `configs` given as (receipt_id, project_id, client_id), oldest first.
    pub fn new(configs: Vec<ConfigEntry>) -> ConfigIndex {
        ConfigIndex { configs }
    }

    /// The configuration a receipt goes to: the request's `receiptId` when it names a
    /// configuration of the request's project that is not another app's; else the oldest
    /// of the token's app; else the oldest project-level one. `None`: no receipt.
    pub fn choose(
        &self,
        receipt_id: Option<&str>,
        project_id: &str,
        client_id: Option<&str>,
    ) -> Option<Arc<str>> {
        if self.configs.is_empty() {
            return None;
        }
        let named = receipt_id.and_then(|id| {
            self.configs.iter().find(|(rid, pid, cid)| {
                &**rid == id
                    && &**pid == project_id
                    && cid.as_deref().is_none_or(|c| Some(c) == client_id)
            })
        });
        let of_app = || {
            client_id.and_then(|client| {
                self.configs
                    .iter()
                    .find(|(_, _, cid)| cid.as_deref() == Some(client))
            })
        };
        let of_project = || {
            self.configs
                .iter()
                .find(|(_, pid, cid)| &**pid == project_id && cid.is_none())
        };
        named
            .or_else(of_app)
            .or_else(of_project)
            .map(|(rid, ..)| rid.clone())
    }
}
