//! The platform's own mail (sign-up confirmation, for now): SMTP through lettre when
//! `TRELLIS_SMTP_URL` is set, otherwise a development mailer that writes each message
//! to the log. Tenants' notification mail goes through their own connections, not here.
//!
//! Messages are sent in the background: a request never waits on a mail server, and a
//! failure is logged (recipient and subject, never the body, which may hold a token).

use std::fmt;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{Error, Result};

/// One plain-text message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Where the platform's mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// Development: each message is logged (target `trellis::mail`), body included.
    Log,
    /// An SMTP server.
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Log => f.write_str("Mailer::Log"),
            Self::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
        }
    }
}

impl Mailer {
    /// SMTP from a URL such as `smtp://user:pass@mail.example.com:587?tls=required`,
    /// `smtps://…:465`, or `smtp://127.0.0.1:2525` (no TLS, for a local relay), sending
    /// as `from` (`Trellis <no-reply@example.com>`).
    pub fn smtp(url: &str, from: &str) -> Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|err| Error::bad_input("TRELLIS_SMTP_URL", err.to_string()))?
            .build();
        let from = from
            .parse()
            .map_err(|_| Error::bad_input("TRELLIS_MAIL_FROM", "not a valid mailbox"))?;
        Ok(Self::Smtp { transport, from })
    }

    /// Whether mail actually leaves the process.
    pub fn delivers(&self) -> bool {
        matches!(self, Self::Smtp { .. })
    }

    /// Sends `mail` now.
    pub async fn send(&self, mail: &Mail) -> Result<()> {
        match self {
            Self::Log => {
                tracing::info!(
                    target: "trellis::mail",
                    to = mail.to,
                    subject = mail.subject,
                    body = mail.body,
                    "mail (not sent: TRELLIS_SMTP_URL is not set)"
                );
                Ok(())
            }
            Self::Smtp { transport, from } => {
                let to: Mailbox = mail
                    .to
                    .parse()
                    .map_err(|_| Error::bad_input("to", "not a valid mailbox"))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(mail.subject.clone())
                    .body(mail.body.clone())
                    .map_err(|err| Error::Internal(err.into()))?;
                transport
                    .send(message)
                    .await
                    .map_err(|err| Error::Internal(err.into()))?;
                Ok(())
            }
        }
    }

    /// Sends `mail` in the background; a failure is logged without the body.
    pub fn send_later(&self, mail: Mail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            if let Err(err) = mailer.send(&mail).await {
                tracing::error!(
                    target: "trellis::mail",
                    to = mail.to,
                    subject = mail.subject,
                    error = %err,
                    "sending mail failed"
                );
            }
        });
    }
}
