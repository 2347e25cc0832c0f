//! Production topology from an application: `DATABASE_URL` (perhaps a
//! transaction-mode pooler), `DIRECT_URL` for session work, `REPLICA_URLS` for reads,
//! and a session that reads its own writes.

use std::io::Write;

use service::accounts::{self, NewUser};
use service::db::{DatabaseUrls, ReadYourWrites, Topology};
use service::error::BoxError;

/// Connects the topology of `urls`, writes a user, and reads it back through the
/// session: from a replica once one has replayed the write, else from the primary.
pub async fn topology_tour(urls: &DatabaseUrls, out: &mut impl Write) -> Result<(), BoxError> {
    let email = "reader@example.org";
    let db = Topology::connect(urls, 10).await?;
    let session = ReadYourWrites::new(db.clone());
    accounts::create_user(session.topology(), NewUser::new(email, "hash")).await?;
    session.wrote().await?;
    let reader = session.reader().await;
    let user = accounts::get_user_by_email(&reader, email).await?;
    writeln!(
        out,
        "{email} read back from the {:?}: {}",
        reader.served_by(),
        user.is_some()
    )?;
    db.close().await;
    Ok(())
}
