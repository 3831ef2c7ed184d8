//! Validated identifiers. Every id becomes one MQTT topic level and often a file name, so the
//! rules keep out `/`, wildcards, `..` and anything a shell or a path would trip on.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} \"{value}\": {reason}")]
pub struct IdError {
    /// What kind of id it was (`instance id`, `device id`…).
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
    /// What rule it broke.
    pub reason: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validate `value` as this kind of id.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                match $check(&value) {
                    Ok(()) => Ok(Self(value)),
                    Err(reason) => Err(IdError { kind: $kind, value, reason }),
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An instance id: `^[a-z0-9][a-z0-9_-]{0,62}$` (contract, section 1).
    InstanceId, "instance id", check_slug
);
id_type!(
    /// A connector's name (`yeelight`): the same rule as instance ids.
    ConnectorName, "connector name", check_slug
);
id_type!(
    /// A device id: 1 to 128 of `A-Z a-z 0-9 _ - . :`, not starting with `.`.
    DeviceId, "device id", check_member
);
id_type!(
    /// A group id: the same rule as device ids.
    GroupId, "group id", check_member
);

fn check_slug(value: &str) -> Result<(), &'static str> {
    let bytes = value.as_bytes();
    match bytes.first() {
        None => return Err("it is empty"),
        Some(b) if !(b.is_ascii_lowercase() || b.is_ascii_digit()) => {
            return Err("it must start with a lowercase letter or a digit");
        }
        Some(_) => {}
    }
    if bytes.len() > 63 {
        return Err("it is longer than 63 characters");
    }
    if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-') {
        return Err("only lowercase letters, digits, '_' and '-' are allowed");
    }
    Ok(())
}

fn check_member(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("it is empty");
    }
    if value.len() > 128 {
        return Err("it is longer than 128 characters");
    }
    if value.starts_with('.') {
        return Err("it must not start with '.'");
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')) {
        return Err("only letters, digits, '_', '-', '.' and ':' are allowed");
    }
    Ok(())
}

/// The slug rule of the seed: derive an instance id from a friendly name ("Living Room" →
/// `living_room`). Returns `None` when nothing usable is left.
pub fn slugify(name: &str) -> Option<InstanceId> {
    let mut slug = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('_') && !slug.is_empty() {
            slug.push('_');
        }
    }
    let slug = slug.trim_end_matches('_');
    let slug: String = slug.chars().take(63).collect();
    InstanceId::new(slug.trim_end_matches('_')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids() {
        let cases = [
            ("demo", true),
            ("demo_1-a", true),
            ("0abc", true),
            ("", false),
            ("Demo", false),
            ("_demo", false),
            ("-demo", false),
            ("de/mo", false),
            ("de mo", false),
            ("..", false),
            ("a+b", false),
            (&"a".repeat(63), true),
            (&"a".repeat(64), false),
        ];
        for (input, ok) in cases {
            assert_eq!(InstanceId::new(input).is_ok(), ok, "input {input:?}");
        }
    }

    #[test]
    fn device_ids() {
        let cases = [
            ("light1", true),
            ("Light_1", true),
            ("0x0000000002dfb19a", true),
            ("aa:bb:cc", true),
            ("", false),
            (".hidden", false),
            ("a/b", false),
            ("a+", false),
            ("a#", false),
            ("a b", false),
        ];
        for (input, ok) in cases {
            assert_eq!(DeviceId::new(input).is_ok(), ok, "input {input:?}");
        }
    }

    #[test]
    fn error_names_the_value_and_rule() {
        let err = InstanceId::new("Bad/Id").unwrap_err();
        assert_eq!(err.to_string(), "invalid instance id \"Bad/Id\": it must start with a lowercase letter or a digit");
    }

    #[test]
    fn slugs() {
        let cases = [
            ("Living Room", Some("living_room")),
            ("  Kitchen -- Lights! ", Some("kitchen_lights")),
            ("Лампа 2", Some("2")),
            ("***", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(slugify(input).as_ref().map(InstanceId::as_str), expected, "input {input:?}");
        }
    }
}

/// Domains of the local network: names under them (and single-label names) are answered on the
/// LAN, never by a public name server, so no outside party can point one at an address or
/// learn of a query for one.
pub const LOCAL_DOMAINS: &[&str] = &[".local", ".lan", ".home.arpa", ".internal", ".localhost"];

/// Whether `name` (a host name, any case, maybe with a final dot) is a local-network name:
/// `localhost`, a single label, or under one of [`LOCAL_DOMAINS`].
pub fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    !name.is_empty() && (!name.contains('.') || LOCAL_DOMAINS.iter().any(|domain| name.ends_with(domain)))
}

#[cfg(test)]
mod local_names {
    #[test]
    fn local_names() {
        for (name, local) in [
            ("localhost", true),
            ("homeserver", true),
            ("Pi.Local.", true),
            ("box.home.arpa", true),
            ("evil.example", false),
            ("local.evil.example", false),
            ("", false),
        ] {
            assert_eq!(super::is_local_name(name), local, "{name}");
        }
    }
}
