//! The hop count: every request the gateway sends upstream says how many modelgate gateways
//! it has passed, and a request that arrives having passed more than `--max-hops` is refused
//! with 508 Loop Detected. A provider aimed at the gateway itself costs one extra request,
//! not every file descriptor of the process.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Egress;
use crate::gateway::ApiError;

/// `modelgate-hops: N`: the number of modelgate gateways a request has passed.
pub const HOPS: HeaderName = HeaderName::from_static("modelgate-hops");

impl Egress {
    /// The hop count of an incoming request (0 when it carries none), or the 508 that refuses
    /// it. An unreadable count counts as too many.
    pub fn hops(&self, headers: &HeaderMap) -> Result<u32, ApiError> {
        let hops = headers
            .get_all(HOPS)
            .iter()
            .map(|value| {
                value
                    .to_str()
                    .ok()
                    .and_then(|text| text.trim().parse::<u32>().ok())
                    .unwrap_or(u32::MAX)
            })
            .max()
            .unwrap_or(0);
        if hops > self.max_hops {
            tracing::warn!(
                hops = %if hops == u32::MAX { "unreadable".to_string() } else { hops.to_string() },
                max_hops = self.max_hops,
                "request refused: it already passed through a modelgate gateway (a provider points back at a gateway?)"
            );
            return Err(ApiError::loop_detected(hops, self.max_hops));
        }
        Ok(hops)
    }
}

/// The header value for a request that has passed `hops` gateways.
pub fn hops_value(hops: u32) -> HeaderValue {
    HeaderValue::from(hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::egress::Policy;

    fn hops(max_hops: u32, values: &[&str]) -> Result<u32, u16> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(HOPS, HeaderValue::from_str(value).expect("value"));
        }
        Egress::with_policy(Policy::default(), max_hops)
            .hops(&headers)
            .map_err(|e| e.status.as_u16())
    }

    #[test]
    fn by_default_any_request_from_a_gateway_is_refused() {
        assert_eq!(hops(0, &[]), Ok(0));
        assert_eq!(hops(0, &["0"]), Ok(0));
        assert_eq!(hops(0, &["1"]), Err(508));
        assert_eq!(hops(0, &["banana"]), Err(508));
    }

    #[test]
    fn max_hops_lets_chains_through_up_to_the_limit() {
        assert_eq!(hops(2, &["2"]), Ok(2));
        assert_eq!(hops(2, &[" 1 "]), Ok(1));
        assert_eq!(hops(2, &["3"]), Err(508));
        assert_eq!(hops(2, &["1", "3"]), Err(508), "the largest of repeated values counts");
        assert_eq!(hops(2, &["99999999999"]), Err(508));
    }

    #[test]
    fn the_message_says_what_happened_and_how_to_fix_it() {
        let error = ApiError::loop_detected(1, 0);
        assert_eq!(error.code, Some("loop_detected"));
        assert_eq!(
            error.message,
            "This request arrived with modelgate-hops: 1: it already passed through 1 modelgate gateway(s), and this gateway accepts at most 0. A provider's baseUrl points back at a modelgate gateway, so requests would go round in a circle: the platform team must point that provider at the real upstream, or raise --max-hops on this gateway to chain gateways on purpose."
        );
    }
}
