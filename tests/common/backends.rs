//! `both_backends!(a, b, …)`: for each async test body `a(&TestDb)`, a module with a
//! `sqlite` and a `postgres` test running it on a fresh database of its own (the
//! PostgreSQL one says `skipped: no PostgreSQL` when no server answers).

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = almanac::store::testing::TestDb::sqlite().await.expect("sqlite");
                super::$name(&db).await;
                db.cleanup().await.expect("cleanup");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(db) = almanac::store::testing::TestDb::postgres().await.expect("postgres")
                else {
                    return;
                };
                super::$name(&db).await;
                db.cleanup().await.expect("cleanup");
            }
        }
    )*};
}
