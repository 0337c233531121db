//! How the ledger names a target's webhook URL (schema 2), and the move of schema-1 ledgers to it.
//!
//! Schema 1 keyed a target by the URL exactly as given. That stored a password from the URL in
//! plain text in the ledger file, and spellings of one URL that reach the same receiver — a
//! trailing `?`, a fragment, `HTTP://` or `:443` — counted as new targets, so everything was sent
//! again. The key is now the URL as the `url` crate normalises it (scheme and host lower-cased,
//! default port dropped), without its fragment (never sent) or an empty query, and with the
//! password replaced by a salted SHA-256 prefix of it: the same password still gives the same
//! target, another password another one, and the file no longer holds it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use percent_encoding::percent_decode_str;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use url::Url;

/// Fixed domain string for the password hash: a ledger key cannot be matched against a generic
/// SHA-256 table, only against guesses made for this use.
const PASSWORD_SALT: &[u8] = b"savvy-replay ledger target password v2\0";

/// The ledger's name for the webhook `url` (schema 2): its canonical spelling
/// ([`crate::ledger::target_url`]) with the password hashed.
pub(crate) fn target_key(url: &Url) -> String {
    let mut key = crate::ledger::target_url::canonical(url);
    if let Some(password) = url.password() {
        // Hash what the receiver gets (the decoded password), so `%41` and `A` are one target.
        let decoded: Vec<u8> = percent_decode_str(password).collect();
        let digest = Sha256::new().chain_update(PASSWORD_SALT).chain_update(&decoded).finalize();
        let hex = hex::encode(&digest[..8]);
        // Only fails for URLs that cannot carry a password, and this one had one.
        let _ = key.set_password(Some(&format!("sha256-{hex}")));
    }
    key.into()
}

/// The key for a URL as stored in a schema-1 ledger, or as given to `failed --webhook-url`: the
/// text itself when it does not parse (it was then never a URL this tool sent to).
pub(crate) fn key_of_text(url: &str) -> String {
    Url::parse(url).map_or_else(|_| url.to_owned(), |u| target_key(&u))
}

/// The keys a URL had before trailing slashes stopped counting: `key`, and `key` with the path's
/// slash (targets written by earlier versions for `…/hook/`).
pub(crate) fn earlier_keys(key: &str) -> Option<String> {
    let url = Url::parse(key).ok()?;
    if url.path().ends_with('/') || url.cannot_be_a_base() {
        return None;
    }
    let mut slashed = url.clone();
    slashed.set_path(&format!("{}/", url.path()));
    Some(slashed.into())
}

/// Fold a target an earlier version keyed `…/hook/` into this one's key `…/hook` (same event
/// type): renamed when `key` has no target yet, else merged as [`migrate_v1`] merges. Only the
/// target being opened, so a ledger is never rewritten wholesale.
pub(super) fn fold_earlier_spelling(conn: &Connection, key: &str, event_type: &str) -> rusqlite::Result<()> {
    let Some(old) = earlier_keys(key) else { return Ok(()) };
    let id_of = |k: &str| {
        conn.query_row(
            "SELECT id FROM targets WHERE webhook_url = ?1 AND event_type = ?2",
            params![k, event_type],
            |r| r.get::<_, i64>(0),
        )
        .optional()
    };
    let Some(old_id) = id_of(&old)? else { return Ok(()) };
    match id_of(key)? {
        None => {
            conn.execute("UPDATE targets SET webhook_url = ?1 WHERE id = ?2", params![key, old_id])?;
        }
        Some(id) => {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let merged = (|| {
                conn.execute(MERGE, params![id, old_id])?;
                conn.execute("DELETE FROM outcomes WHERE target_id = ?1", [old_id])?;
                conn.execute("DELETE FROM targets WHERE id = ?1", [old_id])
            })();
            conn.execute_batch(if merged.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            merged?;
        }
    }
    Ok(())
}

/// Rewrite a schema-1 ledger's target keys as [`target_key`] and mark it schema 2, in one
/// transaction: a crash midway leaves the schema-1 ledger as it was. Targets that now share a key
/// (`…/hook` and `…/hook?`) are merged; per event, a delivery in either wins, else the latest
/// outcome, and the attempts add up.
pub(super) fn migrate_v1(conn: &mut Connection) -> rusqlite::Result<()> {
    // Zero the freed bytes, so the old keys' passwords do not linger in free space.
    conn.pragma_update(None, "secure_delete", "ON")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let targets: Vec<(i64, String, String)> = tx
        .prepare("SELECT id, webhook_url, event_type FROM targets ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut kept: HashMap<(String, String), i64> = HashMap::new();
    for (id, url, event_type) in targets {
        match kept.entry((key_of_text(&url), event_type)) {
            Entry::Vacant(slot) => {
                slot.insert(id);
            }
            Entry::Occupied(slot) => {
                tx.execute(MERGE, params![*slot.get(), id])?;
                tx.execute("DELETE FROM outcomes WHERE target_id = ?1", [id])?;
                tx.execute("DELETE FROM targets WHERE id = ?1", [id])?;
            }
        }
    }
    // Through a placeholder first: a new key may be another target's old one.
    tx.execute("UPDATE targets SET webhook_url = 'migrating ' || id", [])?;
    for ((key, _), id) in &kept {
        tx.execute("UPDATE targets SET webhook_url = ?1 WHERE id = ?2", params![key, id])?;
    }
    tx.pragma_update(None, "user_version", 2)?;
    tx.commit()?;
    conn.pragma_update(None, "secure_delete", "OFF")?;
    // Fold the rewritten pages into the database file now, over the old ones.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Move target ?2's outcomes into target ?1. "The other row wins" is: it is a delivery and ours
/// is not, or both are (or neither is) and it is newer.
const MERGE: &str = "
INSERT INTO outcomes (target_id, event_id, status, attempts, last_status, last_error, first_at, updated_at, body)
SELECT ?1, event_id, status, attempts, last_status, last_error, first_at, updated_at, body
FROM outcomes WHERE target_id = ?2
ON CONFLICT (target_id, event_id) DO UPDATE SET
  attempts    = outcomes.attempts + excluded.attempts,
  first_at    = min(outcomes.first_at, excluded.first_at),
  status      = CASE WHEN (excluded.status = 1) > (outcomes.status = 1) OR ((excluded.status = 1) = (outcomes.status = 1) AND excluded.updated_at > outcomes.updated_at) THEN excluded.status      ELSE outcomes.status      END,
  last_status = CASE WHEN (excluded.status = 1) > (outcomes.status = 1) OR ((excluded.status = 1) = (outcomes.status = 1) AND excluded.updated_at > outcomes.updated_at) THEN excluded.last_status ELSE outcomes.last_status END,
  last_error  = CASE WHEN (excluded.status = 1) > (outcomes.status = 1) OR ((excluded.status = 1) = (outcomes.status = 1) AND excluded.updated_at > outcomes.updated_at) THEN excluded.last_error  ELSE outcomes.last_error  END,
  body        = CASE WHEN (excluded.status = 1) > (outcomes.status = 1) OR ((excluded.status = 1) = (outcomes.status = 1) AND excluded.updated_at > outcomes.updated_at) THEN excluded.body        ELSE outcomes.body        END,
  updated_at  = max(outcomes.updated_at, excluded.updated_at)
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::target_url::spellings::{OTHER, PLAIN, SAME, url};

    fn key(s: &str) -> String {
        target_key(&url(s))
    }

    #[test]
    fn spellings_of_one_url_are_one_target() {
        let plain = key(PLAIN);
        assert_eq!(plain, "https://hooks.example.com/savvycal");
        for same in SAME {
            assert_eq!(key(same), plain, "{same}");
        }
        for other in OTHER {
            assert_ne!(key(other), plain, "{other}");
        }
    }

    /// Two schema-1 targets that are one now: per event, a delivery wins over a later failure,
    /// else the latest outcome wins; attempts add up and the first try is kept.
    #[test]
    fn migration_merges_targets_that_now_share_a_key() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{} PRAGMA user_version = 1;", super::super::open::SCHEMA)).unwrap();
        conn.execute_batch(
            "INSERT INTO targets VALUES (1, 'http://x/hook?', 'event.created', 0),
                                        (2, 'http://x/hook', 'event.created', 0),
                                        (3, 'http://u:pw@x/hook', 'event.created', 0),
                                        (4, 'http://x/hook#', 'event.canceled', 0);
             INSERT INTO outcomes VALUES
               (1, 'e1', 2, 3, 422, 'HTTP 422', 10, 50, x'61'),
               (2, 'e1', 1, 1, 200, NULL, 20, 30, NULL),
               (1, 'e2', 2, 2, 500, 'HTTP 500', 5, 10, x'62'),
               (2, 'e2', 0, 1, NULL, 'interrupted', 15, 40, x'63'),
               (1, 'e3', 2, 1, 422, 'HTTP 422', 1, 1, x'64'),
               (3, 'e1', 1, 1, 200, NULL, 1, 1, NULL),
               (4, 'e1', 1, 1, 200, NULL, 1, 1, NULL);",
        )
        .unwrap();
        migrate_v1(&mut conn).unwrap();
        let targets: Vec<(i64, String, String)> = conn
            .prepare("SELECT id, webhook_url, event_type FROM targets ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let hashed = key("http://u:pw@x/hook");
        assert_eq!(
            targets,
            [
                (1, "http://x/hook".to_owned(), "event.created".to_owned()),
                (3, hashed, "event.created".to_owned()),
                (4, "http://x/hook".to_owned(), "event.canceled".to_owned()),
            ]
        );
        type Row = (String, i64, i64, Option<String>, i64, i64, Option<Vec<u8>>);
        let rows: Vec<Row> = conn
            .prepare(
                "SELECT event_id, status, attempts, last_error, first_at, updated_at, body FROM outcomes
                 WHERE target_id = 1 ORDER BY event_id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("e1".to_owned(), 1, 4, None, 10, 50, None),
                ("e2".to_owned(), 0, 3, Some("interrupted".to_owned()), 5, 40, Some(b"c".to_vec())),
                ("e3".to_owned(), 2, 1, Some("HTTP 422".to_owned()), 1, 1, Some(b"d".to_vec())),
            ]
        );
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 2);
    }

    #[test]
    fn a_password_is_stored_only_as_a_salted_hash() {
        let k = key("https://user:p%2Bss%26word@hooks.example.com/x?");
        assert!(k.starts_with("https://user:sha256-") && k.ends_with("@hooks.example.com/x"), "{k}");
        assert!(!k.contains("p%2Bss") && !k.contains("word"), "{k}");
        // The same password, spelled another way, is the same target; another password is not.
        assert_eq!(key("https://user:p%2bss%26wor%64@hooks.example.com/x"), k);
        assert_eq!(key("https://user:p+ss%26word@hooks.example.com/x"), k, "a + in userinfo is a plus");
        assert_ne!(key("https://user:p%20ss%26word@hooks.example.com/x"), k);
        assert_ne!(key("https://other:p%2Bss%26word@hooks.example.com/x"), k);
        // The key is the unsalted digest of nothing a lookup table would hold.
        let unsalted = hex::encode(&Sha256::digest(b"p+ss&word")[..8]);
        assert!(!k.contains(&unsalted));
    }
}
