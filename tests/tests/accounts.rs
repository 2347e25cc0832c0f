//! Accounts and roles over seed 004's SQL: users with normalised emails, duplicates a
//! typed conflict; every path of `change_user_role` (admins only, unknown role, unknown
//! user, the last admin, concurrent demotions) as a typed error, with its audit row;
//! `has_permission` over the matrix; the roles summary; paging by role.

use std::sync::Arc;

use sea_orm::TransactionTrait;
use service::accounts::{
    self, AccountError, NewUser, Permission, Role, RoleChange, change_user_role, create_user,
    has_permission,
};
use service::error::InvalidInput;
use service::page::Page;
use tests::TestDb;
use uuid::Uuid;

async fn user(t: &TestDb, email: &str, role: Role) -> Uuid {
    create_user(&t.db, NewUser::new(email, "argon2-hash").with_role(role))
        .await
        .expect("create user")
        .id
}

async fn role_of(t: &TestDb, id: Uuid) -> String {
    t.scalar(&format!("SELECT role FROM users WHERE id = '{id}'"))
        .await
}

async fn audit_rows(t: &TestDb) -> String {
    t.scalar("SELECT count(*)::text FROM audit_logs WHERE event_type = 'user.role_changed'")
        .await
}

#[tokio::test]
async fn users_are_created_with_normalised_emails_and_duplicates_are_conflicts() {
    let t = TestDb::new().await;
    let ada = create_user(&t.db, NewUser::new("  Ada@Example.ORG ", "h1"))
        .await
        .expect("create");
    assert_eq!(
        (ada.email.as_str(), ada.role),
        ("ada@example.org", Role::User)
    );
    // In JSON: the role by its name, and never the password hash.
    let json = serde_json::to_value(&ada).expect("json");
    assert_eq!(json["role"], "user");
    assert!(json.get("password_hash").is_none(), "{json}");

    let again = create_user(&t.db, NewUser::new("ADA@example.org", "h2")).await;
    assert!(
        matches!(again, Err(AccountError::DuplicateEmail(ref e)) if e == "ada@example.org"),
        "{again:?}"
    );
    for bad in ["ada", "ada@localhost", "a da@example.org"] {
        assert!(matches!(
            create_user(&t.db, NewUser::new(bad, "h")).await,
            Err(AccountError::InvalidEmail { .. })
        ));
    }
    assert!(matches!(
        create_user(&t.db, NewUser::new("bob@example.org", " ")).await,
        Err(AccountError::Invalid(InvalidInput {
            field: "password_hash",
            ..
        }))
    ));
    assert_eq!(t.scalar("SELECT count(*)::text FROM users").await, "1");

    let by_email = accounts::get_user_by_email(&t.db, "ADA@EXAMPLE.ORG")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(by_email, ada);
    assert_eq!(
        accounts::get_user(&t.db, ada.id).await.expect("get"),
        Some(ada.clone())
    );
    assert_eq!(
        accounts::get_user(&t.db, Uuid::nil()).await.expect("get"),
        None
    );
}

#[tokio::test]
async fn concurrent_creations_of_one_email_make_one_user() {
    let t = Arc::new(TestDb::new().await);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move {
                create_user(
                    &t.db,
                    NewUser::new(format!("Same@Example.org{}", " ".repeat(i)), "h"),
                )
                .await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => created += 1,
            Err(AccountError::DuplicateEmail(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(t.scalar("SELECT count(*)::text FROM users").await, "1");
}

#[tokio::test]
async fn users_are_listed_by_role_a_page_at_a_time() {
    let t = TestDb::new().await;
    for i in 0..5 {
        user(&t, &format!("m{i}@example.org"), Role::Moderator).await;
    }
    user(&t, "a@example.org", Role::Admin).await;
    let first = accounts::list_users(&t.db, Some(Role::Moderator), Page::first(3).expect("page"))
        .await
        .expect("list");
    let second = accounts::list_users(
        &t.db,
        Some(Role::Moderator),
        Page::first(3).expect("page").next(),
    )
    .await
    .expect("list");
    let emails: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|u| u.email.clone())
        .collect();
    assert_eq!(
        emails,
        [
            "m0@example.org",
            "m1@example.org",
            "m2@example.org",
            "m3@example.org",
            "m4@example.org"
        ]
    );
    let all = accounts::list_users(&t.db, None, Page::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 6);
    let summary = accounts::user_roles_summary(&t.db).await.expect("summary");
    let counts: Vec<(Role, i64)> = summary
        .into_iter()
        .map(|s| (s.role, s.user_count))
        .collect();
    assert_eq!(counts, [(Role::Admin, 1), (Role::Moderator, 5)]);
}

#[tokio::test]
async fn every_role_change_path_is_a_typed_outcome_with_its_audit_row() {
    let t = TestDb::new().await;
    let admin = user(&t, "admin@example.org", Role::Admin).await;
    let moderator = user(&t, "mod@example.org", Role::Moderator).await;
    let plain = user(&t, "user@example.org", Role::User).await;

    // An admin promotes: the change and one audit row.
    let change = change_user_role(&t.db, plain, Role::Moderator, admin)
        .await
        .expect("promote");
    assert_eq!(
        change,
        RoleChange {
            user: plain,
            old: Role::User,
            new: Role::Moderator
        }
    );
    assert_eq!(role_of(&t, plain).await, "moderator");
    assert_eq!(audit_rows(&t).await, "1");
    assert_eq!(
        t.sql(
            "SELECT user_id::text, resource_id, details->>'old_role', details->>'new_role'
             FROM audit_logs WHERE event_type = 'user.role_changed'"
        )
        .await,
        [[
            admin.to_string(),
            plain.to_string(),
            "user".into(),
            "moderator".into()
        ]]
    );

    // The same role again: nothing changes, no audit row.
    let same = change_user_role(&t.db, plain, Role::Moderator, admin)
        .await
        .expect("same");
    assert_eq!((same.old, same.new), (Role::Moderator, Role::Moderator));
    assert_eq!(audit_rows(&t).await, "1");

    // A moderator may not; an unknown role, an unknown user, the last admin.
    assert!(matches!(
        change_user_role(&t.db, plain, Role::Admin, moderator).await,
        Err(AccountError::NotAdmin(id)) if id == moderator
    ));
    // An unknown role cannot be named in Rust (`Role`); the SQL function refuses one
    // from psql.
    let refused = t
        .try_sql(&format!(
            "SELECT change_user_role('{plain}', 'root', '{admin}')"
        ))
        .await
        .expect_err("root is no role");
    assert_eq!(tests::sqlstate(&refused), "22023", "{refused}");
    let ghost = Uuid::new_v4();
    assert!(matches!(
        change_user_role(&t.db, ghost, Role::User, admin).await,
        Err(AccountError::UnknownUser(id)) if id == ghost
    ));
    assert!(matches!(
        change_user_role(&t.db, admin, Role::User, admin).await,
        Err(AccountError::LastAdmin(id)) if id == admin
    ));
    assert_eq!(role_of(&t, admin).await, "admin");
    assert_eq!(role_of(&t, plain).await, "moderator");
    assert_eq!(audit_rows(&t).await, "1");

    // With a second admin, the first may step down.
    change_user_role(&t.db, moderator, Role::Admin, admin)
        .await
        .expect("promote");
    change_user_role(&t.db, admin, Role::User, admin)
        .await
        .expect("step down");
    assert_eq!(role_of(&t, admin).await, "user");
    assert_eq!(audit_rows(&t).await, "3");
}

#[tokio::test]
async fn a_role_change_rolls_back_with_the_callers_transaction() {
    let t = TestDb::new().await;
    let admin = user(&t, "admin@example.org", Role::Admin).await;
    let plain = user(&t, "user@example.org", Role::User).await;
    let txn = t.db.begin().await.expect("begin");
    change_user_role(&txn, plain, Role::Moderator, admin)
        .await
        .expect("change");
    txn.rollback().await.expect("rollback");
    assert_eq!(role_of(&t, plain).await, "user");
    assert_eq!(audit_rows(&t).await, "0");
}

#[tokio::test]
async fn concurrent_demotions_never_leave_no_admin() {
    let t = Arc::new(TestDb::new().await);
    // Two admins demote each other at once: one wins; the other is no longer an
    // admin (or would be the last), and is refused.
    let a = user(&t, "a@example.org", Role::Admin).await;
    let b = user(&t, "b@example.org", Role::Admin).await;
    let ab = {
        let t = t.clone();
        tokio::spawn(async move { change_user_role(&t.db, b, Role::User, a).await })
    };
    let ba = {
        let t = t.clone();
        tokio::spawn(async move { change_user_role(&t.db, a, Role::User, b).await })
    };
    let results = [ab.await.expect("join"), ba.await.expect("join")];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results.iter().all(|r| matches!(
        r,
        Ok(_) | Err(AccountError::NotAdmin(_) | AccountError::LastAdmin(_))
    )));
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM users WHERE role = 'admin'")
            .await,
        "1"
    );

    // Five admins each step down at once: four may, the last is refused.
    let admins: Vec<Uuid> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(user(&t, &format!("x{i}@example.org"), Role::Admin).await);
        }
        let left = t
            .scalar("SELECT id::text FROM users WHERE role = 'admin' AND email IN ('a@example.org', 'b@example.org')")
            .await;
        ids.push(left.parse().expect("uuid"));
        ids
    };
    let tasks: Vec<_> = admins
        .iter()
        .map(|&id| {
            let t = t.clone();
            tokio::spawn(async move { change_user_role(&t.db, id, Role::User, id).await })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => {}
            Err(AccountError::LastAdmin(_)) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(refused, 1);
    assert_eq!(
        t.scalar("SELECT count(*)::text FROM users WHERE role = 'admin'")
            .await,
        "1"
    );
}

#[tokio::test]
async fn permissions_follow_the_matrix() {
    let t = TestDb::new().await;
    let plain = user(&t, "user@example.org", Role::User).await;
    let moderator = user(&t, "mod@example.org", Role::Moderator).await;
    let admin = user(&t, "admin@example.org", Role::Admin).await;
    let cases = [
        (Permission::ImagesUpload, [true, true, true]),
        (Permission::AnnotationsCreate, [true, true, true]),
        (Permission::AnnotationsReview, [false, true, true]),
        (Permission::AiAnnotate, [false, true, true]),
        (Permission::UsersChangeRole, [false, false, true]),
        (Permission::SystemMaintain, [false, false, true]),
        (Permission::AtLeast(Role::Moderator), [false, true, true]),
        (Permission::AtLeast(Role::Admin), [false, false, true]),
    ];
    for (permission, expected) in cases {
        for (who, allowed) in [plain, moderator, admin].into_iter().zip(expected) {
            assert_eq!(
                has_permission(&t.db, who, permission).await.expect("ask"),
                allowed,
                "{permission} for {who}"
            );
        }
    }
    assert!(
        !has_permission(&t.db, Uuid::new_v4(), Permission::ImagesRead)
            .await
            .expect("ask")
    );
    // The enum is the matrix: every permission role_permissions() knows, no other
    let mut matrix = t
        .column("SELECT DISTINCT permission FROM role_permissions()")
        .await;
    matrix.sort();
    // (The role names are rows of it too, meaning "at least this role".)
    let mut typed: Vec<String> = Permission::ALL
        .into_iter()
        .chain(Role::ALL.iter().copied().map(Permission::AtLeast))
        .map(|p| p.as_str().to_owned())
        .collect();
    typed.sort();
    assert_eq!(typed, matrix);
    assert!("no.such.permission".parse::<Permission>().is_err());
}
