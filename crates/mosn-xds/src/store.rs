//! The resources an ADS stream has delivered and the proxy accepted, by type URL and name.

use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;

/// One resource as received: its version and its encoded body.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The resource version (delta) or the response's `version_info` (state of the world).
    pub version: String,
    /// The resource, still encoded (`type_url` + protobuf bytes).
    pub body: Any,
}

/// Resources by type URL, then by name (sorted, so translation is deterministic).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Store {
    by_type: BTreeMap<String, BTreeMap<String, Entry>>,
}

impl Store {
    /// The resources of one type.
    pub fn of(&self, type_url: &str) -> impl Iterator<Item = (&str, &Entry)> {
        self.by_type
            .get(type_url)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }

    /// One resource.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&Entry> {
        self.by_type.get(type_url)?.get(name)
    }

    /// Names held for a type.
    pub fn names(&self, type_url: &str) -> Vec<String> {
        self.of(type_url).map(|(n, _)| n.to_string()).collect()
    }

    /// State of the world: the resources of `type_url` become exactly `items`.
    pub fn replace(&mut self, type_url: &str, items: Vec<(String, Entry)>) {
        self.by_type
            .insert(type_url.to_string(), items.into_iter().collect());
    }

    /// Adds or replaces `items` and removes `removed` (delta, and state-of-the-world types whose
    /// responses carry only what changed).
    pub fn update(&mut self, type_url: &str, items: Vec<(String, Entry)>, removed: &[String]) {
        let m = self.by_type.entry(type_url.to_string()).or_default();
        for r in removed {
            m.remove(r);
        }
        m.extend(items);
    }

    /// Keeps only the resources of `type_url` whose names are in `keep`.
    pub fn retain(&mut self, type_url: &str, keep: &std::collections::BTreeSet<String>) {
        if let Some(m) = self.by_type.get_mut(type_url) {
            m.retain(|k, _| keep.contains(k));
        }
    }

    /// How many resources of every type are held.
    pub fn len(&self) -> usize {
        self.by_type.values().map(BTreeMap::len).sum()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
