//! The embedding model the store holds vectors of: recorded once, in `embedding_model`,
//! and checked on every ingest and search.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};

use super::StoreError;
use crate::error::DbError;

/// An embedding model: its name (as the embedder calls it, e.g.
/// `sentence-transformers/all-MiniLM-L6-v2`) and the dimension of its vectors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmbeddingModel {
    /// The model's name, 1 to 200 characters.
    pub name: String,
    /// The length of its vectors.
    pub dimension: usize,
}

impl EmbeddingModel {
    /// A model; refuses an empty or over-long name and a zero dimension.
    pub fn new(name: impl Into<String>, dimension: usize) -> Result<Self, StoreError> {
        let name = name.into();
        let length = name.trim().chars().count();
        if length == 0 || length > 200 {
            return Err(StoreError::Invalid {
                field: "model",
                value: name,
                reason: "model names are 1 to 200 characters",
            });
        }
        if dimension == 0 || dimension > 16_000 {
            return Err(StoreError::Invalid {
                field: "dimension",
                value: dimension.to_string(),
                reason: "dimensions are 1 to 16000",
            });
        }
        Ok(Self {
            name: name.trim().to_owned(),
            dimension,
        })
    }
}

/// The recorded model and the dimension of `document_chunks.embedding`, in one row.
#[derive(Debug, FromQueryResult)]
struct Recorded {
    name: Option<String>,
    dimension: Option<i32>,
    column_dimension: i32,
}

/// Reads and writes the single row of `embedding_model` in one statement (an INSERT …
/// ON CONFLICT DO NOTHING and a read of the row in one CTE, with the column's typmod
/// from the catalogue): SeaORM's builder cannot say it.
const RECORD_SQL: &str = "WITH recorded AS (
         INSERT INTO embedding_model (name, dimension)
         SELECT $1, $2 WHERE $2 = (SELECT atttypmod FROM pg_attribute
                                   WHERE attrelid = 'document_chunks'::regclass
                                     AND attname = 'embedding')
         ON CONFLICT (singleton) DO NOTHING
         RETURNING name, dimension
     )
     SELECT coalesce((SELECT name FROM recorded), (SELECT name FROM embedding_model)) AS name,
            coalesce((SELECT dimension FROM recorded),
                     (SELECT dimension FROM embedding_model)) AS dimension,
            (SELECT atttypmod FROM pg_attribute
             WHERE attrelid = 'document_chunks'::regclass AND attname = 'embedding')
                AS column_dimension";

/// Records `model` as the store's if none is recorded yet, and checks it otherwise —
/// and against the dimension of `document_chunks.embedding` (set by
/// `VECTOR_DIMENSION` when the schema was made): [`StoreError::WrongModel`] or
/// [`StoreError::WrongDimension`] when it differs. One round trip, on any connection
/// (inside the caller's transaction when given one).
pub async fn record_model<C: ConnectionTrait>(
    db: &C,
    model: &EmbeddingModel,
) -> Result<(), StoreError> {
    let row = Recorded::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        RECORD_SQL,
        [model.name.clone().into(), (model.dimension as i32).into()],
    ))
    .one(db)
    .await?
    .ok_or_else(|| DbError::no_row("embedding_model"))?;
    if row.column_dimension as usize != model.dimension {
        return Err(StoreError::WrongDimension {
            document: 0,
            chunk: 0,
            expected: row.column_dimension.max(0) as usize,
            got: model.dimension,
        });
    }
    match (row.name, row.dimension) {
        (Some(name), Some(dimension))
            if name == model.name && dimension as usize == model.dimension =>
        {
            Ok(())
        }
        (Some(name), _) => Err(StoreError::WrongModel {
            expected: name,
            got: model.name.clone(),
        }),
        (None, _) => Err(DbError::no_row("embedding_model").into()),
    }
}

/// The store's recorded model, if an ingest has recorded one. One round trip, through
/// the `embedding_model` entity, on any connection.
pub async fn recorded_model<C: ConnectionTrait>(
    db: &C,
) -> Result<Option<EmbeddingModel>, StoreError> {
    use sea_orm::EntityTrait;
    let row = entity::embedding_model::Entity::find().one(db).await?;
    Ok(row.map(|m| EmbeddingModel {
        name: m.name,
        dimension: m.dimension.max(0) as usize,
    }))
}

/// Refuses `model` when the store has recorded another one
/// ([`StoreError::WrongModel`], or [`StoreError::WrongDimension`] for the same name
/// at another dimension); records nothing. One round trip: the check to make before
/// slow embedding work, which [`record`] would otherwise refuse only afterwards.
pub async fn check_recorded<C: ConnectionTrait>(
    db: &C,
    model: &EmbeddingModel,
) -> Result<(), StoreError> {
    match recorded_model(db).await? {
        Some(stored) if stored.name != model.name => Err(StoreError::WrongModel {
            expected: stored.name,
            got: model.name.clone(),
        }),
        Some(stored) if stored.dimension != model.dimension => Err(StoreError::WrongDimension {
            document: 0,
            chunk: 0,
            expected: stored.dimension,
            got: model.dimension,
        }),
        _ => Ok(()),
    }
}
