//! A bound on the bytes queued for each client.
//!
//! rmqtt bounds a client's queue by count only ([`Limits::max_queued`](crate::Limits)); with
//! packets of up to 1 MiB that is a GiB held for one slow or absent client. Its queue has no
//! hook where a message enters it, but every routed message passes through the `Shared`
//! extension point, so [`BoundedShared`] wraps rmqtt's own: a message is charged to each
//! recipient as it is routed, and not forwarded to a recipient whose queue would pass the
//! bound. The charge is released when the message leaves the queue, delivered or dropped
//! ([`Release`], on rmqtt's hooks), and forgotten with the session.
//!
//! Messages that reach a queue without being routed (retained messages sent on a new
//! subscription, redeliveries) are not charged; their release saturates at zero. A charge
//! whose message left without a hook would stay: when a client is refused while its queue is
//! empty and nothing of its has been released for [`STALE_AFTER`], what it is charged with is
//! taken as stale and cleared. A session stuck writing to a client that does not read also
//! shows an empty queue (what is routed to it waits in its channel meanwhile), but it is
//! disconnected after rmqtt's send timeout of 10 s, well within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rmqtt::Result;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::shared::{DefaultShared, Entry, Shared};
use rmqtt::types::{
    ClientId, ForwardedCount, ForwardedRecipients, From, Id, MsgID, NodeId, Publish, Reason, SessionStatus,
    SubRelations, SubRelationsMap, SubsSearchParams, SubsSearchResult, SubscriptionOptions, To, TopicFilter,
};

/// How long a client's charges must go without a release before an empty queue makes them
/// stale.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// What a message weighs in a queue: its topic and payload.
fn size(publish: &Publish) -> usize {
    publish.topic.len() + publish.payload.len()
}

/// Bytes queued per client, against one bound.
#[derive(Debug)]
pub(crate) struct Ledger {
    max_bytes: usize,
    held: Mutex<HashMap<ClientId, Held>>,
}

#[derive(Debug)]
struct Held {
    bytes: usize,
    /// Refusals have been logged since the queue last drained.
    refusing: bool,
    /// The first charge, or the last release since.
    moved: Instant,
}

impl Held {
    fn new(now: Instant) -> Self {
        Self { bytes: 0, refusing: false, moved: now }
    }
}

/// The answer to a charge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Charge {
    Admitted,
    /// Over the bound; `first` when this is the first refusal since the queue last drained,
    /// `quiet` how long since a message of this client's left its queue.
    Refused {
        held: usize,
        first: bool,
        quiet: Duration,
    },
}

impl Ledger {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self { max_bytes, held: Mutex::default() }
    }

    /// Charge `bytes` to `client` unless that would pass the bound. A client with nothing
    /// queued is always admitted, so one message larger than the bound still gets through.
    pub(crate) fn charge(&self, client: &ClientId, bytes: usize) -> Charge {
        self.charge_at(client, bytes, Instant::now())
    }

    /// [`Ledger::charge`] at `now`.
    fn charge_at(&self, client: &ClientId, bytes: usize, now: Instant) -> Charge {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = held.entry(client.clone()).or_insert_with(|| Held::new(now));
        if entry.bytes == 0 || entry.bytes.saturating_add(bytes) <= self.max_bytes {
            entry.bytes = entry.bytes.saturating_add(bytes);
            return Charge::Admitted;
        }
        let first = !entry.refusing;
        entry.refusing = true;
        Charge::Refused { held: entry.bytes, first, quiet: now.saturating_duration_since(entry.moved) }
    }

    /// A message of `bytes` left `client`'s queue.
    pub(crate) fn release(&self, client: &str, bytes: usize) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = held.get_mut(client) {
            entry.bytes = entry.bytes.saturating_sub(bytes);
            entry.moved = Instant::now();
            if entry.bytes == 0 {
                held.remove(client);
            }
        }
    }

    /// `client`'s session ended, or its charges are known to be stale.
    pub(crate) fn forget(&self, client: &str) {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(client);
    }

    /// Bytes charged to `client`.
    #[cfg(test)]
    fn held(&self, client: &str) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).get(client).map_or(0, |h| h.bytes)
    }
}

/// rmqtt's routing, with each recipient's queue bounded in bytes.
pub(crate) struct BoundedShared {
    inner: DefaultShared,
    scx: ServerContext,
    node: NodeId,
    ledger: Arc<Ledger>,
}

impl BoundedShared {
    pub(crate) fn new(scx: ServerContext, ledger: Arc<Ledger>) -> Self {
        Self { inner: DefaultShared::new(Some(scx.clone())), node: scx.node.id(), scx, ledger }
    }

    /// The subscriptions on this node that `publish` matches.
    async fn recipients(&self, from: &From, publish: &Publish) -> SubRelations {
        if let Some(target) = &publish.target_clientid {
            let mut opts = SubscriptionOptions::default();
            opts.set_qos(publish.qos);
            return vec![(publish.topic.clone(), target.clone(), opts, None, None)];
        }
        match self.scx.extends.router().await.matches(from.id.clone(), &publish.topic).await {
            Ok(mut by_node) => by_node.remove(&self.node).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(topic = %publish.topic, "MQTT message not routed: {e}");
                SubRelations::new()
            }
        }
    }

    /// The recipients whose queues can take `publish`, charged for it.
    fn admit(&self, publish: &Publish, mut relations: SubRelations) -> SubRelations {
        let bytes = size(publish);
        relations.retain(|(_, client, ..)| match self.ledger.charge(client, bytes) {
            Charge::Admitted => true,
            Charge::Refused { held, first, quiet } => (quiet >= STALE_AFTER && self.stale(client, bytes)) || {
                if first {
                    tracing::warn!(
                        client = %client,
                        "MQTT messages for {client} dropped: {held} bytes are queued for it and the limit is {} (further drops are not logged until its queue drains)",
                        self.ledger.max_bytes
                    );
                }
                false
            },
        });
        relations
    }

    /// Whether `client`'s charges, quiet for [`STALE_AFTER`], are stale (its queue is empty),
    /// in which case they are cleared and the message charged afresh.
    fn stale(&self, client: &ClientId, bytes: usize) -> bool {
        let entry = self.inner.entry(Id::from(self.node, client.clone()));
        let empty = entry.session().is_some_and(|s| s.deliver_queue().is_empty());
        if empty {
            self.ledger.forget(client);
            return self.ledger.charge(client, bytes) == Charge::Admitted;
        }
        false
    }
}

type Forwarded<T> = std::result::Result<T, (T, Vec<(To, From, Publish, Reason)>)>;

#[async_trait]
impl Shared for BoundedShared {
    fn entry(&self, id: Id) -> Box<dyn Entry> {
        self.inner.entry(id)
    }

    fn exist(&self, client_id: &str) -> bool {
        self.inner.exist(client_id)
    }

    async fn forwards(&self, msg_id: Option<MsgID>, from: From, publish: Publish) -> Forwarded<ForwardedCount> {
        let relations = self.recipients(&from, &publish).await;
        let admitted = self.admit(&publish, relations);
        if admitted.is_empty() {
            return Ok(0);
        }
        match self.inner.forwards_to(from, &publish, admitted, msg_id).await {
            Ok(recipients) => Ok(recipients.len()),
            Err((recipients, errors)) => Err((recipients.len(), errors)),
        }
    }

    async fn forwards_and_get_shareds(
        &self,
        from: From,
        publish: Publish,
    ) -> std::result::Result<
        (SubRelationsMap, ForwardedRecipients),
        (ForwardedRecipients, Vec<(To, From, Publish, Reason)>),
    > {
        let (shared, single): (SubRelations, SubRelations) =
            self.recipients(&from, &publish).await.into_iter().partition(|relation| relation.4.is_some());
        let mut groups = SubRelationsMap::default();
        if !shared.is_empty() {
            groups.insert(self.node, shared);
        }
        let admitted = self.admit(&publish, single);
        if admitted.is_empty() {
            return Ok((groups, ForwardedRecipients::default()));
        }
        let recipients = self.inner.forwards_to(from, &publish, admitted, None).await?;
        Ok((groups, recipients))
    }

    async fn forwards_to(
        &self,
        from: From,
        publish: &Publish,
        relations: SubRelations,
        msg_id: Option<MsgID>,
    ) -> Forwarded<ForwardedRecipients> {
        let admitted = self.admit(publish, relations);
        self.inner.forwards_to(from, publish, admitted, msg_id).await
    }

    fn iter(&self) -> Box<dyn Iterator<Item = Box<dyn Entry>> + Sync + Send + '_> {
        self.inner.iter()
    }

    fn random_session(&self) -> Option<Session> {
        self.inner.random_session()
    }

    async fn session_status(&self, client_id: &str) -> Option<SessionStatus> {
        self.inner.session_status(client_id).await
    }

    async fn client_states_count(&self) -> usize {
        self.inner.client_states_count().await
    }

    fn sessions_count(&self) -> usize {
        self.inner.sessions_count()
    }

    async fn query_subscriptions(&self, q: &SubsSearchParams) -> Vec<SubsSearchResult> {
        self.inner.query_subscriptions(q).await
    }

    async fn subscriptions_count(&self) -> usize {
        self.inner.subscriptions_count().await
    }

    async fn retain_load_with(
        &self,
        topic_filter: &TopicFilter,
        cb: Arc<dyn rmqtt::shared::RetainLoadCallback>,
    ) -> Result<Vec<(NodeId, MsgID)>> {
        self.inner.retain_load_with(topic_filter, cb).await
    }
}

/// The hook types [`Release`] answers.
pub(crate) const HOOKS: [Type; 3] = [Type::MessageDelivered, Type::MessageDropped, Type::SessionTerminated];

/// Releases a message's charge when it leaves its queue, and a session's when it ends.
pub(crate) struct Release(pub(crate) Arc<Ledger>);

#[async_trait]
impl Handler for Release {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::MessageDelivered(session, _, publish) => self.0.release(&session.id.client_id, size(publish)),
            Parameter::MessageDropped(Some(to), _, publish, _) => self.0.release(&to.client_id, size(publish)),
            Parameter::SessionTerminated(session, _) => self.0.forget(&session.id.client_id),
            _ => {}
        }
        (true, acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> ClientId {
        ClientId::from(id)
    }

    #[test]
    fn a_queue_takes_messages_up_to_its_bound_and_again_once_drained() {
        let ledger = Ledger::new(100);
        let slow = client("slow");
        assert_eq!(ledger.charge(&slow, 60), Charge::Admitted);
        assert_eq!(ledger.charge(&slow, 40), Charge::Admitted);
        assert!(matches!(ledger.charge(&slow, 1), Charge::Refused { held: 100, first: true, .. }));
        assert!(matches!(ledger.charge(&slow, 1), Charge::Refused { held: 100, first: false, .. }), "told once");
        assert_eq!(ledger.charge(&client("other"), 100), Charge::Admitted, "each client has its own bound");
        ledger.release("slow", 60);
        assert_eq!(ledger.held("slow"), 40);
        assert_eq!(ledger.charge(&slow, 60), Charge::Admitted);
        ledger.release("slow", 100);
        assert_eq!(ledger.charge(&slow, 101), Charge::Admitted, "an empty queue takes one message of any size");
        assert!(
            matches!(ledger.charge(&slow, 1), Charge::Refused { held: 101, first: true, .. }),
            "drained, so told again"
        );
    }

    #[test]
    fn a_refusal_says_how_long_nothing_of_the_client_has_left_its_queue() {
        let ledger = Ledger::new(100);
        let stuck = client("stuck");
        assert_eq!(ledger.charge(&stuck, 100), Charge::Admitted);
        let later = Instant::now() + Duration::from_secs(31);
        let Charge::Refused { quiet, .. } = ledger.charge_at(&stuck, 1, later) else {
            panic!("admitted past the bound")
        };
        assert!(quiet >= Duration::from_secs(31), "{quiet:?}");
        ledger.release("stuck", 10);
        let Charge::Refused { quiet, .. } = ledger.charge(&stuck, 20) else { panic!("admitted past the bound") };
        assert!(quiet < Duration::from_secs(31), "a release restarts the count: {quiet:?}");
    }

    #[test]
    fn releases_without_a_charge_and_forgotten_sessions_leave_nothing_behind() {
        let ledger = Ledger::new(100);
        ledger.release("never-charged", 50);
        assert_eq!(ledger.held("never-charged"), 0);
        let gone = client("gone");
        assert_eq!(ledger.charge(&gone, 80), Charge::Admitted);
        ledger.release("gone", 500);
        assert_eq!(ledger.held("gone"), 0, "a release past the charge stops at zero");
        assert_eq!(ledger.charge(&gone, 90), Charge::Admitted);
        ledger.forget("gone");
        assert_eq!(ledger.held("gone"), 0);
        assert!(ledger.held.lock().unwrap().is_empty(), "no entry is kept for a client with nothing queued");
    }
}
