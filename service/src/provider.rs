//! The AI providers of seed 004's `ai_provider` enum, by name: what the vision cache's
//! keys and the annotation jobs' types share.

use entity::sea_orm_active_enums::AiProvider;

/// A provider name that is not one of `ai_provider`'s values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown AI provider {0:?} (openai, google or anthropic)")]
pub struct UnknownProvider(pub String);

/// Parses a provider name (`openai`, `google`, `anthropic`, any case, trimmed).
pub fn parse(name: &str) -> Result<AiProvider, UnknownProvider> {
    match name.trim().to_ascii_lowercase().as_str() {
        "openai" => Ok(AiProvider::Openai),
        "google" => Ok(AiProvider::Google),
        "anthropic" => Ok(AiProvider::Anthropic),
        _ => Err(UnknownProvider(name.to_owned())),
    }
}

/// The provider's name as the database spells it.
pub fn name(provider: &AiProvider) -> &'static str {
    match provider {
        AiProvider::Openai => "openai",
        AiProvider::Google => "google",
        AiProvider::Anthropic => "anthropic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for n in ["openai", "google", "anthropic"] {
            assert_eq!(name(&parse(n).expect("known")), n);
        }
        assert_eq!(parse(" OpenAI ").expect("any case"), AiProvider::Openai);
        assert_eq!(parse("llama"), Err(UnknownProvider("llama".into())));
    }
}
