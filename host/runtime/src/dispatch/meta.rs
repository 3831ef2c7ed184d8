//! `B/meta/…`: the devices list and the instance info, published at start, on request and when
//! they change.

use iot2mqtt_contract::message::{DeviceListEntry, InfoMessage, PluginInfo};

use super::*;

impl Dispatcher {
    pub(super) fn meta_request(&mut self, what: &str) {
        match what {
            "devices_list" => self.publish_devices_list(),
            "info" => self.publish_info(),
            other => tracing::warn!(request = %other, "ignoring an unknown meta request"),
        }
    }

    pub(crate) fn publish_devices_list(&mut self) {
        let instance = self.config.instance_id.as_str();
        let mut list = Vec::with_capacity(self.devices.len());
        for (id, d) in &mut self.devices {
            let online = self.reporter.online(id);
            d.listed_online = online;
            list.push(DeviceListEntry {
                device_id: id.clone(),
                global_id: format!("{instance}_{id}"),
                model: d.info.as_ref().and_then(|i| i.model.clone()),
                enabled: d.entry.enabled,
                online,
            });
        }
        self.reporter.meta(self.reporter.topics().devices_list(), &list);
    }

    /// Publish `meta/devices_list` once every enabled device has been read (so a start
    /// publishes one list, not one per device). Later changes arrive through the reporter's
    /// availability signal, so a read costs nothing here.
    pub(super) fn refresh_devices_list(&mut self, device: &str) {
        if let Some(d) = self.devices.get_mut(device)
            && d.worker.is_some()
            && !d.read_once
        {
            d.read_once = true;
            self.unread = self.unread.saturating_sub(1);
        }
        if self.ready && !self.list_settled && self.unread == 0 {
            self.list_settled = true;
            self.refresh_stale_list();
        }
    }

    /// Republish `meta/devices_list` when availability no longer matches it.
    pub(super) fn refresh_stale_list(&mut self) {
        if self.devices.iter().any(|(id, d)| d.listed_online != self.reporter.online(id)) {
            self.publish_devices_list();
        }
    }

    pub(crate) fn publish_info(&self) {
        let about = self.plugin.about();
        let info = InfoMessage {
            instance_id: self.config.instance_id.to_string(),
            connector_type: self.connector_type.clone(),
            devices_count: self.devices.len(),
            groups_count: self.config.groups.len(),
            uptime: self.started.elapsed().as_secs(),
            plugin: Some(PluginInfo {
                name: about.name.clone(),
                version: about.version.clone(),
                sha256: about.sha256.clone(),
            }),
            swaps: Some(self.swaps),
            last_swap: self.last_swap.clone(),
        };
        self.reporter.meta(self.reporter.topics().info(), &info);
    }
}
