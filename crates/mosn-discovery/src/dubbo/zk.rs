//! ZooKeeper operations of the registry, on the `zookeeper-client` crate: sessions with MOSN's
//! 5 s timeout, persistent parents created as needed, ephemeral leaves re-created when they
//! exist (MOSN deletes and re-creates them), and children listed with a watch.

use std::time::Duration;

use zookeeper_client as zk;

/// The ZooKeeper session timeout MOSN asks for (`registry.timeout=5s`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects a session to `addr` (`host:port`), failing after `SESSION_TIMEOUT`.
///
/// Errors: ZooKeeper unreachable or refusing the session.
pub async fn connect(addr: &str) -> Result<zk::Client, zk::Error> {
    zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .with_connection_timeout(Duration::from_secs(2))
        .with_fail_eagerly()
        .connect(addr)
        .await
}

fn open_acl() -> zk::Acls<'static> {
    zk::Acls::anyone_all()
}

/// Creates the persistent folder `path` and its parents (empty data, open ACL), as MOSN does
/// segment by segment; existing ones are fine.
///
/// Errors: the session's.
pub async fn ensure_folder(c: &zk::Client, path: &str) -> Result<(), zk::Error> {
    c.mkdir(path, &zk::CreateMode::Persistent.with_acls(open_acl()))
        .await
}

/// Creates the ephemeral node `path` (empty data, open ACL) with its persistent parents; an
/// existing node is deleted and created again, so it belongs to this session.
///
/// Errors: the session's.
pub async fn put_ephemeral(c: &zk::Client, path: &str) -> Result<(), zk::Error> {
    if let Some((parent, _)) = path.rsplit_once('/') {
        ensure_folder(c, parent).await?;
    }
    let opts = zk::CreateMode::Ephemeral.with_acls(open_acl());
    match c.create(path, &[], &opts).await {
        Ok(_) => Ok(()),
        Err(zk::Error::NodeExists) => {
            match c.delete(path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
            c.create(path, &[], &opts).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Deletes the node `path`; a missing node is fine.
///
/// Errors: the session's.
pub async fn remove(c: &zk::Client, path: &str) -> Result<(), zk::Error> {
    match c.delete(path, None).await {
        Ok(()) | Err(zk::Error::NoNode) => Ok(()),
        Err(e) => Err(e),
    }
}
