//! Money as integers: amounts in nano-dollars (`i64`, up to 9.2 billion USD), prices in
//! pico-dollars per token (a price per million tokens in micro-dollars is exactly that).
//! No float touches a balance, so every replica and the Redis store agree to the nano-dollar.

use crate::crd::Pricing;

/// Nano-dollars in one dollar.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// A price, in pico-dollars per token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

/// Token counts of one call, as the upstream reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    /// Part of `prompt` served from the provider's prompt cache.
    pub cached_prompt: u64,
}

impl Price {
    /// Parses an alias's `spec.pricing`; the error names the field and says what is wrong.
    pub fn parse(pricing: &Pricing) -> Result<Price, (&'static str, String)> {
        let field = |name: &'static str, text: &str| {
            parse_decimal(text, 6)
                .and_then(|micro| u64::try_from(micro).ok())
                .ok_or_else(|| (name, format!("'{text}' must be a decimal number of US dollars such as 2.50 or 0.075 (at most 6 decimals)")))
        };
        let input = field("spec.pricing.inputPerMillionTokens", &pricing.input_per_million_tokens)?;
        let output = field(
            "spec.pricing.outputPerMillionTokens",
            &pricing.output_per_million_tokens,
        )?;
        let cached_input = match &pricing.cached_input_per_million_tokens {
            Some(text) => field("spec.pricing.cachedInputPerMillionTokens", text)?,
            None => input,
        };
        Ok(Price {
            input,
            output,
            cached_input,
        })
    }

    /// What a call costs, in nano-dollars, rounded up (never less than the exact amount).
    pub fn cost(&self, tokens: Tokens) -> i64 {
        let cached = tokens.cached_prompt.min(tokens.prompt);
        let pico = u128::from(tokens.prompt - cached) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(tokens.completion) * u128::from(self.output);
        i64::try_from(pico.div_ceil(1000)).unwrap_or(i64::MAX)
    }
}

/// Parses a credit amount (USD, up to 9 decimals) into nano-dollars.
pub fn parse_amount(text: &str) -> Option<i64> {
    parse_decimal(text, 9)
}

/// A non-negative decimal with at most `scale` fractional digits, as an integer of
/// 10^-`scale` units. The grammar is the CRD's CEL rule: digits, optionally `.` and digits.
fn parse_decimal(text: &str, scale: u32) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || whole.len() > 12 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.contains('.') && fraction.is_empty() {
        return None;
    }
    if fraction.len() > scale as usize || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let unit = 10i64.checked_pow(scale)?;
    let whole: i64 = whole.parse().ok()?;
    let mut frac: i64 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
    for _ in fraction.len()..scale as usize {
        frac *= 10;
    }
    whole.checked_mul(unit)?.checked_add(frac)
}

/// Nano-dollars as a decimal string of dollars, trailing zeros trimmed to at least cents:
/// `1234560000` is `"1.23456"`, `5000000000` is `"5.00"`, `-1` is `"-0.000000001"`.
pub fn format_usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    let whole = abs / NANOS_PER_USD as u64;
    let mut fraction = format!("{:09}", abs % NANOS_PER_USD as u64);
    while fraction.len() > 2 && fraction.ends_with('0') {
        fraction.pop();
    }
    format!("{sign}{whole}.{fraction}")
}

/// Nano-dollars as a float of dollars, for metrics and the read API's JSON numbers.
pub fn usd(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing(input: &str, output: &str, cached: Option<&str>) -> Pricing {
        Pricing {
            input_per_million_tokens: input.into(),
            output_per_million_tokens: output.into(),
            cached_input_per_million_tokens: cached.map(Into::into),
        }
    }

    #[test]
    fn prices_are_exact_and_costs_round_up_to_the_nano_dollar() {
        let price = Price::parse(&pricing("2.50", "10.00", Some("1.25"))).expect("price");
        assert_eq!(
            price,
            Price {
                input: 2_500_000,
                output: 10_000_000,
                cached_input: 1_250_000
            }
        );
        // 1,000 prompt tokens (400 cached) and 500 completion tokens:
        // 600 × 2.50 + 400 × 1.25 + 500 × 10.00 per million = 0.0015 + 0.0005 + 0.005 USD.
        let tokens = Tokens {
            prompt: 1000,
            completion: 500,
            cached_prompt: 400,
        };
        assert_eq!(price.cost(tokens), 7_000_000);
        assert_eq!(format_usd(price.cost(tokens)), "0.007");
        // One token at 0.0001 per million is 0.1 pico-dollars… rounded up to one nano-dollar.
        let tiny = Price::parse(&pricing("0.000001", "0", None)).expect("price");
        assert_eq!(
            tiny.cost(Tokens {
                prompt: 1,
                ..Tokens::default()
            }),
            1
        );
        assert_eq!(
            tiny.cached_input, tiny.input,
            "cached input defaults to the input price"
        );
    }

    #[test]
    fn malformed_prices_name_their_field() {
        for bad in ["", "1.", ".5", "-1", "1e3", "2,50", "1.1234567", "abc", " 1"] {
            let error = Price::parse(&pricing(bad, "1", None)).expect_err(bad);
            assert_eq!(error.0, "spec.pricing.inputPerMillionTokens", "{bad}");
            assert!(error.1.contains("at most 6 decimals"), "{}", error.1);
        }
        let error = Price::parse(&pricing("1", "1", Some("x"))).expect_err("cached");
        assert_eq!(error.0, "spec.pricing.cachedInputPerMillionTokens");
    }

    #[test]
    fn amounts_parse_to_nano_dollars_and_format_back() {
        assert_eq!(parse_amount("1000.00"), Some(1_000_000_000_000));
        assert_eq!(parse_amount("0.000000001"), Some(1));
        assert_eq!(parse_amount("0.0000000001"), None);
        assert_eq!(format_usd(1_234_560_000), "1.23456");
        assert_eq!(format_usd(5_000_000_000), "5.00");
        assert_eq!(format_usd(0), "0.00");
        assert_eq!(format_usd(-1), "-0.000000001");
    }
}
