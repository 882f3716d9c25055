//! A PostgreSQL database per test on the server `AUDITFLOW_TEST_PG` names (default
//! `postgres://postgres@127.0.0.1:5432`), dropped (`WITH (FORCE)`) when the value is dropped,
//! also while a failed test unwinds. Included by the test crates that need PostgreSQL.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection};

/// The PostgreSQL server the tests use, without a database name.
pub fn server_url() -> String {
    std::env::var("AUDITFLOW_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// A fresh, empty database named after `tag`, this process and a counter.
    pub async fn create(tag: &str) -> TestDb {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "af_e2e_{tag}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
            .await
            .expect("connect to postgres");
        // Two statements: a multi-statement string would run as one transaction, which
        // CREATE DATABASE refuses.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .expect("create test database");
        }
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// The same database through another host:port (a proxy).
    #[allow(dead_code)]
    pub fn url_via(&self, port: u16) -> String {
        let base = server_url();
        let (scheme_user, _) = base.rsplit_once('@').expect("AUDITFLOW_TEST_PG has user@host:port");
        format!("{scheme_user}@127.0.0.1:{port}/{}", self.name)
    }

    #[allow(dead_code)]
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any runtime (or inside one that may be shutting down): use a
        // thread with a runtime of its own. Best effort: a failure leaves a stray database.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&format!("{}/postgres", server_url())).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}
