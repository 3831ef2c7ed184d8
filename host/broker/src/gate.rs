//! The broker's hooks: logins against [`Accounts`], and every publish and subscribe checked
//! against the account's access. A refusal is logged once per connection.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, PublishAclResult, SubscribeAclResult};

use crate::accounts::{Accounts, Login};

/// The hook types [`Gate`] answers.
pub(crate) const HOOKS: [Type; 4] =
    [Type::ClientAuthenticate, Type::ClientSubscribeCheckAcl, Type::MessagePublishCheckAcl, Type::ClientDisconnected];

pub(crate) struct Gate {
    accounts: Accounts,
    /// Without accounts (a test broker), anonymous clients may do anything.
    anonymous: bool,
    max_topic_len: usize,
    /// Connections already told about in the log (client id and connection start).
    warned: Arc<Mutex<HashSet<String>>>,
}

impl Gate {
    pub(crate) fn new(accounts: Accounts, anonymous: bool, max_topic_len: usize) -> Self {
        Self { accounts, anonymous, max_topic_len, warned: Arc::default() }
    }

    fn clone_handler(&self) -> Box<dyn Handler> {
        Box::new(Self {
            accounts: self.accounts.clone(),
            anonymous: self.anonymous,
            max_topic_len: self.max_topic_len,
            warned: Arc::clone(&self.warned),
        })
    }

    /// One handler per hook type, sharing state.
    pub(crate) fn handlers(&self) -> impl Iterator<Item = (Type, Box<dyn Handler>)> + '_ {
        HOOKS.into_iter().map(|typ| (typ, self.clone_handler()))
    }

    /// Whether the session may use `topic`; `None` when it belongs to no account and anonymous
    /// clients are allowed.
    fn allowed(&self, session: &Session, topic: &str, check: impl Fn(&str) -> bool) -> bool {
        if topic.len() > self.max_topic_len {
            return false;
        }
        match session.id.username.as_deref() {
            Some(user) => check(user),
            None => self.anonymous,
        }
    }

    fn refused(&self, session: &Session, what: &str, topic: &str) {
        let key = format!("{}@{}", session.id.client_id, session.id.create_time);
        let first = self.warned.lock().unwrap_or_else(PoisonError::into_inner).insert(key);
        if first {
            let shown: String = topic.chars().take(200).collect();
            tracing::warn!(
                client = %session.id.client_id,
                user = session.id.username.as_deref().unwrap_or("-"),
                "MQTT {what} refused on {shown}: not allowed for this account (further refusals on this connection are not logged)"
            );
        }
    }
}

#[async_trait]
impl Handler for Gate {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(connect) => {
                let Some(user) = connect.username().map(|u| u.to_string()) else {
                    tracing::info!(client = %connect.client_id(), "MQTT login refused: no user name (anonymous clients are not allowed)");
                    return (false, Some(HookResult::AuthResult(AuthResult::NotAuthorized)));
                };
                let password = connect.password().map(|p| p.to_vec()).unwrap_or_default();
                let result = match self.accounts.login(&user, &password, connect.client_id()) {
                    Login::Accepted { superuser } => AuthResult::Allow(superuser, None),
                    Login::BadCredentials => {
                        tracing::info!(client = %connect.client_id(), user, "MQTT login refused: bad user name or password");
                        AuthResult::BadUsernameOrPassword
                    }
                    Login::ClientIdTaken => {
                        tracing::warn!(client = %connect.client_id(), user, "MQTT login refused: the client id belongs to another account");
                        AuthResult::NotAuthorized
                    }
                };
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let filter = &subscribe.topic_filter;
                let result = if self.allowed(session, filter, |user| self.accounts.may_subscribe(user, filter)) {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    self.refused(session, "subscribe", filter);
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let topic = &publish.topic;
                let result = if self.allowed(session, topic, |user| self.accounts.may_publish(user, topic)) {
                    PublishAclResult::allow()
                } else {
                    self.refused(session, "publish", topic);
                    PublishAclResult::rejected(false, None)
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::ClientDisconnected(session, _) => {
                let key = format!("{}@{}", session.id.client_id, session.id.create_time);
                self.warned.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}
