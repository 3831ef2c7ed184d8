//! Plugins in the UI: an instance's plugin panel (what it runs, what it ran before, its
//! history of changes) and a connector's page (its instances, the version each runs, and an
//! update of them all).

use askama::Template;

use super::Chrome;
use crate::instances::{InstanceView, PluginHistory, RebuildOutcome, Rebuilt, UpdateAll, UpdateOutcome};
use crate::store::plugins::{ChangeCause, ChangeOutcome, PluginRef};
use crate::ui::i18n::{Text, fill};

/// A plugin version in words: `name version` and the start of its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionView {
    /// `demo 0.2.0` (or the short hash when the version never loaded).
    pub label: String,
    /// The first 12 hex digits of its hash.
    pub short: String,
    /// The whole hash.
    pub sha256: String,
}

impl VersionView {
    /// The words for `plugin`.
    pub fn of(plugin: &PluginRef) -> Self {
        let short: String = plugin.sha256.chars().take(12).collect();
        let label = match (&plugin.name, &plugin.version) {
            (Some(name), Some(version)) => format!("{name} {version}"),
            (Some(name), None) => name.clone(),
            _ => short.clone(),
        };
        Self { label, short, sha256: plugin.sha256.clone() }
    }
}

/// One change in the history table.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    /// When (RFC 3339).
    pub at: String,
    /// What asked for it, in words.
    pub cause: String,
    /// The version before.
    pub from: Option<VersionView>,
    /// The version asked for.
    pub to: VersionView,
    /// How it ended, in words.
    pub outcome: String,
    /// `good`, `bad` or `muted`: the outcome's colour.
    pub class: &'static str,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The pause, in words.
    pub pause: String,
}

/// The plugin panel of an instance's page.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginPanel {
    /// Where its forms post: `/instances/{connector}/{id}/plugin`.
    pub action: String,
    /// The version it runs (or starts with).
    pub current: Option<VersionView>,
    /// Since when (RFC 3339).
    pub since: Option<String>,
    /// The version a rollback returns to.
    pub previous: Option<VersionView>,
    /// Its changes, newest first.
    pub changes: Vec<ChangeRow>,
}

impl PluginPanel {
    /// The panel of instance `connector`/`id` with `history`.
    pub fn build(t: &Text, connector: &str, id: &str, history: &PluginHistory) -> Self {
        Self {
            action: format!("/instances/{connector}/{id}/plugin"),
            current: history.current.as_ref().map(VersionView::of),
            since: history.since.clone(),
            previous: history.previous.as_ref().map(VersionView::of),
            changes: history.changes.iter().map(|c| change_row(t, c)).collect(),
        }
    }
}

fn change_row(t: &Text, change: &crate::store::plugins::PluginChange) -> ChangeRow {
    let p = &t.plugin;
    let (outcome, class) = match change.outcome {
        ChangeOutcome::Swapped => (p.swapped.clone(), "good"),
        ChangeOutcome::Kept => (p.kept.clone(), "muted"),
        ChangeOutcome::Rejected => (p.rejected.clone(), "bad"),
    };
    let cause = match change.cause {
        ChangeCause::Upload => p.cause_upload.clone(),
        ChangeCause::Rollback => p.cause_rollback.clone(),
        ChangeCause::UpdateAll => p.cause_update_all.clone(),
    };
    let pause = match (change.outcome, change.pause_ms) {
        (ChangeOutcome::Swapped, Some(ms)) => pause_text(ms),
        (ChangeOutcome::Swapped, None) => p.pause_unknown.clone(),
        _ => "–".to_string(),
    };
    ChangeRow {
        at: change.at.clone(),
        cause,
        from: change.from.as_ref().map(VersionView::of),
        to: VersionView::of(&change.to),
        outcome,
        class,
        reason: change.reason.clone(),
        pause,
    }
}

/// A pause in milliseconds, to a tenth below 10 ms.
pub fn pause_text(ms: f64) -> String {
    if ms < 10.0 { format!("{ms:.1} ms") } else { format!("{ms:.0} ms") }
}

/// What an upload or a rollback did, as the notice of the instance's page.
pub fn switch_notice(t: &Text, switch: &crate::instances::PluginSwitch) -> String {
    let plugin = format!("{} {}", switch.name, switch.version);
    if !switch.swapped {
        return fill(&t.plugin.kept_notice, &[("plugin", &plugin)]);
    }
    let pause = switch.pause_ms.map_or_else(|| t.plugin.pause_unknown.clone(), pause_text);
    fill(&t.plugin.swapped_notice, &[("plugin", &plugin), ("pause", &pause)])
}

/// One instance on its connector's page.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorInstance {
    /// Its id.
    pub id: String,
    /// Its friendly name.
    pub name: String,
    /// The version it runs, as far as known.
    pub runs: Option<VersionView>,
    /// What the last update did to it, in words.
    pub update: Option<String>,
    /// The update's colour (`good`, `bad`, `muted`).
    pub update_class: &'static str,
}

/// A connector's page.
#[derive(Debug, Template)]
#[template(path = "connector.html")]
pub struct ConnectorPage {
    /// The frame.
    pub chrome: Chrome,
    /// Its name (`demo`).
    pub name: String,
    /// Its display name.
    pub display_name: String,
    /// Its description.
    pub description: String,
    /// Its version.
    pub version: String,
    /// Its instances, by id.
    pub instances: Vec<ConnectorInstance>,
    /// What the last update did, in one sentence.
    pub notice: Option<(bool, String)>,
    /// Its instances run a plugin (which an upload updates).
    pub has_plugin: bool,
    /// It runs its own image (which a rebuild updates).
    pub own_image: bool,
}

/// What an update or a rebuild of all a connector's instances did: a word for each instance
/// and one sentence for the whole.
#[derive(Debug, Clone)]
pub struct Outcomes {
    per_instance: Vec<(String, String, &'static str)>,
    notice: (bool, String),
}

impl Outcomes {
    /// After a plugin was uploaded for every instance.
    pub fn of_update(t: &Text, update: &UpdateAll) -> Self {
        let per_instance = update
            .instances
            .iter()
            .map(|step| {
                let (words, class) = match step.outcome {
                    UpdateOutcome::Swapped => (&t.plugin.swapped, "good"),
                    UpdateOutcome::Kept => (&t.plugin.kept, "muted"),
                    UpdateOutcome::Rejected => (&t.plugin.rejected, "bad"),
                    UpdateOutcome::NotTried => (&t.plugin.not_tried, "muted"),
                };
                (step.instance.clone(), words.clone(), class)
            })
            .collect();
        let notice = match &update.stopped_at {
            Some(at) => {
                let reason = update.instances.iter().find(|s| &s.instance == at).and_then(|s| s.detail.clone());
                (false, fill(&t.connector.stopped, &[("instance", at), ("reason", &reason.unwrap_or_default())]))
            }
            None => {
                let short: String = update.sha256.chars().take(12).collect();
                (true, fill(&t.connector.updated, &[("sha", &short), ("count", &update.instances.len().to_string())]))
            }
        };
        Self { per_instance, notice }
    }

    /// After a container connector's image was rebuilt and its instances recreated.
    pub fn of_rebuild(t: &Text, rebuilt: &Rebuilt) -> Self {
        let per_instance = rebuilt
            .instances
            .iter()
            .map(|step| {
                let (words, class) = match step.outcome {
                    RebuildOutcome::Recreated => (&t.connector.recreated, "good"),
                    RebuildOutcome::Kept => (&t.plugin.kept, "muted"),
                    RebuildOutcome::Failed => (&t.connector.failed, "bad"),
                    RebuildOutcome::NotTried => (&t.plugin.not_tried, "muted"),
                };
                (step.instance.clone(), words.clone(), class)
            })
            .collect();
        let notice = match &rebuilt.stopped_at {
            Some(at) => {
                let reason = rebuilt.instances.iter().find(|s| &s.instance == at).and_then(|s| s.detail.clone());
                let text =
                    fill(&t.connector.rebuild_stopped, &[("instance", at), ("reason", &reason.unwrap_or_default())]);
                (false, text)
            }
            None => (true, fill(&t.connector.rebuilt, &[("count", &rebuilt.instances.len().to_string())])),
        };
        Self { per_instance, notice }
    }
}

impl ConnectorPage {
    /// The rows of a connector's `instances`, each with the version it runs, after an update
    /// or a rebuild when one was just made; and its outcome in one sentence.
    pub fn rows(
        instances: &[(InstanceView, Option<PluginRef>)],
        outcomes: Option<&Outcomes>,
    ) -> (Vec<ConnectorInstance>, Option<(bool, String)>) {
        let mut rows: Vec<ConnectorInstance> = instances
            .iter()
            .map(|(i, runs)| {
                let id = i.config.instance_id.to_string();
                let step = outcomes.and_then(|o| o.per_instance.iter().find(|(instance, _, _)| *instance == id));
                ConnectorInstance {
                    name: i.config.friendly_name.clone().unwrap_or_else(|| id.clone()),
                    id,
                    runs: runs.as_ref().map(VersionView::of),
                    update: step.map(|(_, words, _)| words.clone()),
                    update_class: step.map_or("muted", |(_, _, class)| class),
                }
            })
            .collect();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        (rows, outcomes.map(|o| o.notice.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_pauses_read_as_words() {
        let known = PluginRef { sha256: "ab".repeat(32), name: Some("demo".into()), version: Some("0.2.0".into()) };
        let view = VersionView::of(&known);
        assert_eq!((view.label.as_str(), view.short.as_str()), ("demo 0.2.0", "abababababab"));
        let unknown = PluginRef { sha256: "cd".repeat(32), name: None, version: None };
        assert_eq!(VersionView::of(&unknown).label, "cdcdcdcdcdcd");
        assert_eq!(pause_text(0.42), "0.4 ms");
        assert_eq!(pause_text(12.6), "13 ms");
    }
}
