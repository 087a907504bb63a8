//! Arbitrary bytes as an xDS resource of each type (the first byte picks the type, the second
//! whether a well-formed companion resource is added): translation must not panic, and what it
//! produces must parse (or be refused) by mosn-config without a panic.
#![no_main]

use envoy_types::pb::google::protobuf::Any;
use libfuzzer_sys::fuzz_target;
use mosn_xds::store::{Entry, Store};
use mosn_xds::types;

const TYPES: [&str; 5] = [
    types::LISTENER,
    types::ROUTE,
    types::CLUSTER,
    types::ENDPOINT,
    types::SECRET,
];

fuzz_target!(|data: &[u8]| {
    let [t, name, body @ ..] = data else { return };
    let type_url = TYPES[*t as usize % TYPES.len()];
    let mut store = Store::default();
    // The same bytes under two names, and once under another type (a wrong-type resource).
    for (ty, n) in [(type_url, format!("r{name}")), (TYPES[(*t as usize + 1) % 5], "x".into())] {
        store.update(
            ty,
            vec![(
                n,
                Entry {
                    version: "1".into(),
                    body: Any {
                        type_url: type_url.into(),
                        value: body.to_vec(),
                    },
                },
            )],
            &[],
        );
    }
    let _ = mosn_xds::translate::wanted(&store);
    let t = mosn_xds::translate(&store);
    let doc = serde_json::json!({
        "servers": [{
            "listeners": t.listeners.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            "routers": t.routers.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        }],
        "cluster_manager": {"clusters": t.clusters.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()},
    });
    let _ = mosn_config::from_value(&doc);
});
