//! Routing over real sockets: virtual hosts, path and header matchers, weighted clusters,
//! header mutation at three levels, rewrites, redirects and direct responses.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_prefix_path_regex_header_and_method() {
    let names = [
        "host", "prefix", "path", "regex", "header", "method", "default",
    ];
    let mut ups = Vec::new();
    for n in names {
        ups.push(named(n).await);
    }
    let clusters: Vec<_> = names
        .iter()
        .zip(&ups)
        .map(|(n, u)| cluster(n, &[u.addr]))
        .collect();
    let vhosts = json!([
        {"name": "byhost", "domains": ["api.example.com"], "routers": [
            {"match": {"prefix": "/"}, "route": {"cluster_name": "host"}}]},
        {"name": "any", "domains": ["*"], "routers": [
            {"match": {"path": "/exact"}, "route": {"cluster_name": "path"}},
            {"match": {"regex": "/items/[0-9]+"}, "route": {"cluster_name": "regex"}},
            {"match": {"prefix": "/", "headers": [{"name": "version", "value": "v2"}]}, "route": {"cluster_name": "header"}},
            {"match": {"prefix": "/", "headers": [{"name": "method", "value": "DELETE"}]}, "route": {"cluster_name": "method"}},
            {"match": {"prefix": "/api/"}, "route": {"cluster_name": "prefix"}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "default"}}]}
    ]);
    let p = proxy(config(vhosts, json!(clusters)));
    let mut c = Client::connect(p.addr).await;
    let body = |r: Resp| r.text();
    assert_eq!(
        body(
            c.send(req("GET", "/x", &[("host", "api.example.com:80")]))
                .await
        ),
        "host"
    );
    assert_eq!(body(c.get("/exact").await), "path");
    assert_eq!(body(c.get("/exact/no").await), "default");
    assert_eq!(body(c.get("/items/42").await), "regex");
    assert_eq!(
        body(c.get("/items/42x").await),
        "default",
        "regex must match the whole path"
    );
    assert_eq!(
        body(c.send(req("GET", "/api/x", &[("version", "v2")])).await),
        "header"
    );
    assert_eq!(body(c.send(req("DELETE", "/api/x", &[])).await), "method");
    assert_eq!(body(c.get("/api/x").await), "prefix");
    assert_eq!(body(c.get("/other?q=1").await), "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_with_flag_nr() {
    let u = named("a").await;
    let vhosts = json!([{"name": "only", "domains": ["only.example.com"], "routers": [
        {"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]);
    let p = proxy(config(vhosts, json!([cluster("a", &[u.addr])])));
    let r = get(p.addr, "/", &[("host", "other.example.com")]).await;
    assert_eq!(r.status, 404);
    assert_eq!(p.flag_count(mosn_api::ResponseFlag::NoRoute), 1);
    assert_eq!(u.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_clusters_split_80_20_within_3_percent() {
    let a = named("a").await;
    let b = named("b").await;
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [
        {"match": {"prefix": "/"}, "route": {"weighted_clusters": [
            {"cluster": {"name": "a", "weight": 80}}, {"cluster": {"name": "b", "weight": 20}}]}}]}]);
    let p = proxy(config(
        vhosts,
        json!([cluster("a", &[a.addr]), cluster("b", &[b.addr])]),
    ));
    let mut c = Client::connect(p.addr).await;
    let mut na = 0;
    for _ in 0..10_000 {
        if c.get("/").await.body == "a" {
            na += 1;
        }
    }
    let share = na as f64 / 10_000.0;
    assert!((0.77..=0.83).contains(&share), "cluster a got {share}");
    assert_eq!(a.requests() + b.requests(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grey_release_by_header_and_host_metadata() {
    let v1 = named("1.0").await;
    let v2 = named("2.0").await;
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [
        {"match": {"prefix": "/", "headers": [{"name": "version", "value": "2.0"}]},
         "route": {"cluster_name": "svc", "metadata_match": {"filter_metadata": {"mosn.lb": {"version": "2.0"}}}}},
        {"match": {"prefix": "/"},
         "route": {"cluster_name": "svc", "metadata_match": {"filter_metadata": {"mosn.lb": {"version": "1.0"}}}}}]}]);
    let clusters = json!([{"name": "svc", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
        "lb_subset_config": {"subset_selectors": [["version"]]},
        "hosts": [
            {"address": v1.addr.to_string(), "metadata": {"filter_metadata": {"mosn.lb": {"version": "1.0"}}}},
            {"address": v2.addr.to_string(), "metadata": {"filter_metadata": {"mosn.lb": {"version": "2.0"}}}}]}]);
    let p = proxy(config(vhosts, clusters));
    let mut c = Client::connect(p.addr).await;
    for _ in 0..20 {
        assert_eq!(
            c.send(req("GET", "/", &[("version", "2.0")])).await.text(),
            "2.0"
        );
        assert_eq!(c.get("/").await.text(), "1.0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mutation_at_router_vhost_and_route_levels() {
    // The upstream echoes the request headers it saw as "name=value" lines.
    let u = upstream(|r| async move {
        let mut names: Vec<String> = r
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("")))
            .collect();
        names.sort();
        let mut resp = text(200, names.join("\n"));
        resp.headers_mut()
            .insert("x-upstream-secret", "s".parse().unwrap());
        resp.headers_mut()
            .insert("x-resp-keep", "k".parse().unwrap());
        resp
    })
    .await;
    let add = |k: &str, v: &str| json!({"header": {"key": k, "value": v}, "append": false});
    let mut cfg = config(
        json!([{"name": "v", "domains": ["*"],
            "request_headers_to_add": [add("x-vhost", "1"), add("x-level", "vhost")],
            "request_headers_to_remove": ["x-drop-vhost"],
            "response_headers_to_add": [add("x-resp-vhost", "1")],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a",
                "request_headers_to_add": [add("x-route", "1"), add("x-level", "route")],
                "request_headers_to_remove": ["x-drop-route"],
                "response_headers_to_add": [add("x-resp-route", "1")],
                "response_headers_to_remove": ["x-upstream-secret"]}}]}]),
        json!([cluster("a", &[u.addr])]),
    );
    let r0 = &mut cfg["servers"][0]["routers"][0];
    r0["request_headers_to_add"] = json!([add("x-router", "1"), add("x-level", "router")]);
    r0["request_headers_to_remove"] = json!(["x-drop-router"]);
    r0["response_headers_to_add"] = json!([add("x-resp-router", "1")]);
    let p = proxy(cfg);
    let r = get(
        p.addr,
        "/",
        &[
            ("x-drop-vhost", "1"),
            ("x-drop-route", "1"),
            ("x-drop-router", "1"),
            ("x-keep", "1"),
        ],
    )
    .await;
    let seen = r.text();
    for want in [
        "x-router=1",
        "x-vhost=1",
        "x-route=1",
        "x-keep=1",
        "x-level=route",
    ] {
        assert!(
            seen.lines().any(|l| l == want),
            "upstream lacks {want}: {seen}"
        );
    }
    assert!(
        !seen.contains("x-drop-"),
        "removed headers reached the upstream: {seen}"
    );
    assert_eq!(r.header("x-resp-router"), Some("1"));
    assert_eq!(r.header("x-resp-vhost"), Some("1"));
    assert_eq!(r.header("x-resp-route"), Some("1"));
    assert_eq!(r.header("x-resp-keep"), Some("k"));
    assert_eq!(r.header("x-upstream-secret"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_redirects_and_direct_responses() {
    let u = upstream(|r| async move {
        let host = r
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        text(200, format!("{} {}", r.uri(), host))
    })
    .await;
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [
        {"match": {"prefix": "/old/"}, "route": {"cluster_name": "a", "prefix_rewrite": "/new/"}},
        {"match": {"prefix": "/re/"}, "route": {"cluster_name": "a",
            "regex_rewrite": {"pattern": {"regex": "^/re/(\\w+)/tail$"}, "substitution": "/v2/\\1"}}},
        {"match": {"prefix": "/host"}, "route": {"cluster_name": "a", "host_rewrite": "backend.internal"}},
        {"match": {"prefix": "/moved"}, "redirect": {"path_redirect": "/here", "host_redirect": "new.example.com", "scheme_redirect": "https"}},
        {"match": {"prefix": "/temp"}, "redirect": {"response_code": 307, "host_redirect": "t.example.com"}},
        {"match": {"path": "/teapot"}, "direct_response": {"status": 418, "body": "short and stout"}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]);
    let p = proxy(config(vhosts, json!([cluster("a", &[u.addr])])));
    let mut c = Client::connect(p.addr).await;
    assert_eq!(c.get("/old/x?q=1").await.text(), "/new/x?q=1 test");
    assert_eq!(c.get("/re/abc/tail").await.text(), "/v2/abc test");
    assert_eq!(c.get("/host/1").await.text(), "/host/1 backend.internal");
    let r = c.get("/moved/a").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://new.example.com/here"));
    let r = c.get("/temp/b?x=1").await;
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some("http://t.example.com/temp/b?x=1")
    );
    let r = c.get("/teapot").await;
    assert_eq!((r.status, r.text().as_str()), (418, "short and stout"));
    assert_eq!(
        u.requests(),
        3,
        "redirects and direct responses never reach the upstream"
    );
}

async fn distribution(lb: &str, weights: &[u32], n: usize) -> (Vec<usize>, Vec<Upstream>) {
    let mut ups = Vec::new();
    for _ in weights {
        ups.push(named("x").await);
    }
    let hosts: Vec<_> = ups
        .iter()
        .zip(weights)
        .map(|(u, w)| json!({"address": u.addr.to_string(), "weight": w}))
        .collect();
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]);
    let p = proxy(config(
        vhosts,
        json!([{"name": "c", "type": "SIMPLE", "lb_type": lb, "hosts": hosts}]),
    ));
    let mut c = Client::connect(p.addr).await;
    for _ in 0..n {
        assert_eq!(c.get("/").await.status, 200);
    }
    (ups.iter().map(Upstream::requests).collect(), ups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_distributions_over_real_hosts() {
    let (rr, _) = distribution("LB_ROUNDROBIN", &[1, 1, 1], 600).await;
    assert_eq!(rr, vec![200, 200, 200]);
    let (wrr, _) = distribution("LB_WEIGHTED_ROUNDROBIN", &[1, 2, 3], 600).await;
    assert_eq!(wrr, vec![100, 200, 300]);
    let (rnd, _) = distribution("LB_RANDOM", &[1, 1, 1], 3000).await;
    assert!(rnd.iter().all(|n| (800..1200).contains(n)), "{rnd:?}");
    let (lr, _) = distribution("LB_LEAST_REQUEST", &[1, 1, 1], 600).await;
    assert!(
        lr.iter().all(|n| *n > 100),
        "idle hosts all get traffic: {lr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_less_to_the_slow_host() {
    let slow = upstream(|_| async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        text(200, "slow")
    })
    .await;
    let fast = named("fast").await;
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]);
    let cl = json!({"name": "c", "type": "SIMPLE", "lb_type": "LB_LEAST_REQUEST",
        "hosts": [{"address": slow.addr.to_string()}, {"address": fast.addr.to_string()}]});
    let p = proxy(config(vhosts, json!([cl])));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for _ in 0..20 {
                c.get("/").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(slow.requests() + fast.requests(), 160);
    assert!(
        slow.requests() * 3 < fast.requests(),
        "slow {} fast {}",
        slow.requests(),
        fast.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subset_fall_back_policies() {
    let v1 = named("1.0").await;
    let v2 = named("2.0").await;
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [
        {"match": {"prefix": "/"}, "route": {"cluster_name": "svc",
            "metadata_match": {"filter_metadata": {"mosn.lb": {"version": "3.0"}}}}}]}]);
    let cluster = |policy: serde_json::Value| {
        json!([{"name": "svc", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "lb_subset_config": {"fall_back_policy": policy, "default_subset": {"version": "2.0"}, "subset_selectors": [["version"]]},
            "hosts": [
                {"address": v1.addr.to_string(), "metadata": {"filter_metadata": {"mosn.lb": {"version": "1.0"}}}},
                {"address": v2.addr.to_string(), "metadata": {"filter_metadata": {"mosn.lb": {"version": "2.0"}}}}]}])
    };
    // No host runs 3.0. NoFallBack: 503; AnyEndpoint: every host; DefaultSubset: the 2.0 hosts.
    let p = proxy(config(vhosts.clone(), cluster(json!(0))));
    assert_eq!(get(p.addr, "/", &[]).await.status, 503);
    let p = proxy(config(vhosts.clone(), cluster(json!(1))));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(get(p.addr, "/", &[]).await.text());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["1.0", "2.0"]);
    let p = proxy(config(vhosts, cluster(json!(2))));
    for _ in 0..4 {
        assert_eq!(get(p.addr, "/", &[]).await.text(), "2.0");
    }
}
