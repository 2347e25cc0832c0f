//! `text_enum!`: an enum whose values are words stored in a text column (`users.role`,
//! `jobs.status`), with the one set of impls each such enum needs: the word
//! (`as_str`, `Display`, serde's lowercase name), `FromStr` (trimmed, any case) to an
//! error of the caller's, `ALL` in order, and `DeriveValueType`, so a query reads it
//! as a value of its own.

/// Declares a text enum: `text_enum! { /// docs pub enum Name / Error { /// docs Variant => "word", … } }`.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident / $error:ident {
            $($(#[$vmeta:meta])* $variant:ident => $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            sea_orm::DeriveValueType,
        )]
        #[serde(rename_all = "lowercase")]
        #[sea_orm(value_type = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word, as the column stores it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $error;

            /// A word, trimmed, any case.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let word = s.trim().to_ascii_lowercase();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == word)
                    .ok_or_else(|| $error(s.to_owned()))
            }
        }
    };
}

pub(crate) use text_enum;
