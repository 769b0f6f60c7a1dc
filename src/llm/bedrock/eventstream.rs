//! The AWS event stream (`application/vnd.amazon.eventstream`) that carries ConverseStream:
//! binary messages with a prelude, headers, a payload and CRCs, read with
//! `aws-smithy-eventstream` (which checks the prelude and message CRCs and the header
//! encoding). This framer only finds where each message ends and bounds its size.

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, BytesMut};

use crate::llm::stream::{Frame, Framer};
use crate::llm::UpstreamError;

/// Largest message accepted (AWS's limit for an event-stream message is 16 MiB).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Bytes of the prelude's total-length field.
const LENGTH_BYTES: usize = 4;

/// Splits an AWS event stream into [`Frame::EventStream`] frames.
#[derive(Default)]
pub struct EventStreamFramer {
    buffer: BytesMut,
}

impl EventStreamFramer {
    pub fn new() -> Self {
        EventStreamFramer::default()
    }

    /// The next whole message in the buffer, if one has arrived.
    fn next_message(&mut self) -> Result<Option<Message>, UpstreamError> {
        if self.buffer.len() < LENGTH_BYTES {
            return Ok(None);
        }
        let total = (&self.buffer[..LENGTH_BYTES]).get_u32() as usize;
        if total > MAX_MESSAGE {
            return Err(UpstreamError::bad_response(format!(
                "the provider's event stream announced a message of {total} bytes, more than the {MAX_MESSAGE} allowed"
            )));
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        let bytes = self.buffer.split_to(total);
        read_message_from(&bytes[..])
            .map(Some)
            .map_err(|e| UpstreamError::bad_response(format!("the provider's event stream is corrupt ({e})")))
    }
}

/// A string header's value.
fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(value) => Some(value.as_str()),
            _ => None,
        })
}

impl Framer for EventStreamFramer {
    fn feed(
        &mut self,
        bytes: &[u8],
        each: &mut dyn FnMut(Frame<'_>) -> Result<(), UpstreamError>,
    ) -> Result<(), UpstreamError> {
        self.buffer.extend_from_slice(bytes);
        while let Some(message) = self.next_message()? {
            let message_type = header(&message, ":message-type").unwrap_or("event");
            match message_type {
                // An unmodeled error: its code and message travel in headers, the message
                // is handed on as the payload.
                "error" => each(Frame::EventStream {
                    message_type,
                    event_type: header(&message, ":error-code").unwrap_or("error"),
                    payload: header(&message, ":error-message").unwrap_or_default().as_bytes(),
                })?,
                "exception" => each(Frame::EventStream {
                    message_type,
                    event_type: header(&message, ":exception-type").unwrap_or("exception"),
                    payload: message.payload(),
                })?,
                _ => each(Frame::EventStream {
                    message_type,
                    event_type: header(&message, ":event-type").unwrap_or_default(),
                    payload: message.payload(),
                })?,
            }
        }
        Ok(())
    }
}

/// Encodes one event-stream message (tests, fuzzing seeds and fake upstreams).
pub fn encode(message_type: &str, type_header: (&str, &str), payload: &[u8]) -> Vec<u8> {
    use aws_smithy_types::event_stream::Header;
    let message = Message::new(bytes::Bytes::copy_from_slice(payload))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(message_type.to_string().into()),
        ))
        .add_header(Header::new(
            type_header.0.to_string(),
            HeaderValue::String(type_header.1.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".to_string().into()),
        ));
    let mut out = Vec::new();
    // Writing to a Vec fails only for headers over the format's limits, which these are not.
    let _ = aws_smithy_eventstream::frame::write_message_to(&message, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8], split: usize) -> Result<Vec<(String, String, String)>, UpstreamError> {
        let mut framer = EventStreamFramer::new();
        let mut seen = Vec::new();
        for piece in [&bytes[..split], &bytes[split..]] {
            framer.feed(piece, &mut |frame| {
                if let Frame::EventStream {
                    message_type,
                    event_type,
                    payload,
                } = frame
                {
                    seen.push((
                        message_type.to_string(),
                        event_type.to_string(),
                        String::from_utf8_lossy(payload).into_owned(),
                    ));
                }
                Ok(())
            })?;
        }
        Ok(seen)
    }

    #[test]
    fn messages_split_anywhere_come_out_whole() {
        let mut bytes = encode("event", (":event-type", "messageStart"), br#"{"role":"assistant"}"#);
        bytes.extend(encode(
            "exception",
            (":exception-type", "throttlingException"),
            br#"{"message":"slow down"}"#,
        ));
        for split in 0..=bytes.len() {
            let seen = frames(&bytes, split).expect("frames");
            assert_eq!(
                seen,
                vec![
                    (
                        "event".to_string(),
                        "messageStart".to_string(),
                        r#"{"role":"assistant"}"#.to_string()
                    ),
                    (
                        "exception".to_string(),
                        "throttlingException".to_string(),
                        r#"{"message":"slow down"}"#.to_string()
                    ),
                ]
            );
        }
    }

    #[test]
    fn a_corrupt_crc_or_a_huge_length_is_an_error() {
        let mut bytes = encode("event", (":event-type", "messageStart"), br#"{"role":"assistant"}"#);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(frames(&bytes, 0).is_err(), "a bad message CRC");
        let mut bytes = encode("event", (":event-type", "messageStart"), b"{}");
        bytes[8] ^= 0xff;
        assert!(frames(&bytes, 0).is_err(), "a bad prelude CRC");
        let huge = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(frames(&huge, 0).is_err(), "a 4 GiB message");
    }
}
