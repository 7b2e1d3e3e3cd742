//! TEMPLATE: no model and no network. The completion is the rendered prompt itself (the
//! last user message, else the last system message), the same for the same messages,
//! so a process can serve a template, and tests can run a process, without a provider.

use std::time::Instant;

use async_trait::async_trait;

use super::{check_format, ChatRole, Completion, Message, ModelSettings, Provider, ProviderError};

/// The provider that answers with the prompt. Its token counts are an estimate, not a
/// tokenizer's: the whitespace-separated words of the messages (input) and of the
/// answer (output).
#[derive(Clone, Copy, Debug, Default)]
pub struct Template;

#[async_trait]
impl Provider for Template {
    async fn complete(
        &self,
        messages: &[Message],
        settings: &ModelSettings,
    ) -> Result<Completion, ProviderError> {
        let started = Instant::now();
        let last = |role| messages.iter().rev().find(|m| m.role == role);
        let answer = last(ChatRole::User)
            .or_else(|| last(ChatRole::System))
            .ok_or_else(|| {
                ProviderError::BadResponse("the prompt has no user or system message".into())
            })?;
        let content = answer.content.clone();
        check_format(&content, &settings.response_format)?;
        Ok(Completion {
            input_tokens: messages.iter().map(|m| words(&m.content)).sum(),
            output_tokens: words(&content),
            content,
            attempts: 1,
            provider_latency: started.elapsed(),
        })
    }
}

/// The token estimate of a text: its whitespace-separated words.
fn words(text: &str) -> i64 {
    i64::try_from(text.split_whitespace().count()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::ResponseFormat;
    use super::*;

    fn settings(response_format: ResponseFormat) -> ModelSettings {
        ModelSettings {
            response_format,
            ..ModelSettings::new("")
        }
    }

    #[tokio::test]
    async fn the_answer_is_the_last_user_message_with_word_counts() {
        let messages = [
            Message::new(ChatRole::System, "You greet people."),
            Message::new(ChatRole::User, "hello"),
            Message::new(ChatRole::Assistant, "hi there"),
            Message::new(ChatRole::User, "Greet  Ada\nLovelace"),
        ];
        let completion = Template
            .complete(&messages, &settings(ResponseFormat::Text))
            .await
            .unwrap();
        assert_eq!(completion.content, "Greet  Ada\nLovelace");
        assert_eq!(completion.input_tokens, 3 + 1 + 2 + 3);
        assert_eq!(completion.output_tokens, 3);
        assert_eq!(completion.attempts, 1);
        let again = Template
            .complete(&messages, &settings(ResponseFormat::Text))
            .await
            .unwrap();
        assert_eq!(again.content, completion.content);
    }

    #[tokio::test]
    async fn without_a_user_message_the_system_message_is_the_answer() {
        let messages = [Message::new(ChatRole::System, "Only rules.")];
        let completion = Template
            .complete(&messages, &settings(ResponseFormat::Text))
            .await
            .unwrap();
        assert_eq!(completion.content, "Only rules.");
        let err = Template
            .complete(&[], &settings(ResponseFormat::Text))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "PROVIDER_BAD_RESPONSE");
    }

    #[tokio::test]
    async fn a_json_format_needs_a_json_answer() {
        let schema = ResponseFormat::JsonSchema {
            name: "greeting".into(),
            schema: json!({ "type": "object" }),
        };
        for format in [ResponseFormat::Json, schema] {
            let json = [Message::new(ChatRole::User, r#"{"greeting": "hi"}"#)];
            let completion = Template.complete(&json, &settings(format.clone())).await;
            assert_eq!(completion.unwrap().content, r#"{"greeting": "hi"}"#);
            let text = [Message::new(ChatRole::User, "hi")];
            let err = Template
                .complete(&text, &settings(format))
                .await
                .unwrap_err();
            assert!(matches!(err, ProviderError::BadResponse(_)), "{err:?}");
        }
    }
}
