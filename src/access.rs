//! Who may connect: only_from / no_access / access_times, decided from the peer's address (and name when needed).
//!
//! # The rule
//!
//! xinetd's documented rule: find the most specific match of the peer in each list.
//!
//! - Neither list set: everyone is allowed (and the daemon skips the check).
//! - Only `only_from`: allowed iff it matches. `only_from = []` denies everyone.
//! - Only `no_access`: denied iff it matches.
//! - Both: the more specific match wins; equally specific matches deny; a peer that
//!   matches neither is denied (`only_from` is set, and it did not match).
//!
//! # Specificity
//!
//! From least to most specific:
//!
//! 1. a `/0` network (`0.0.0.0`, `::/0`): every address of its family;
//! 2. a domain suffix (`.example.com`), ranked among domains by its number of labels
//!    (`.a.example.com` beats `.example.com`), and below every network with a non-zero
//!    prefix: a name in a domain is a weaker statement than an address in a network,
//!    because whoever runs the peer's reverse zone chooses its name;
//! 3. a network, by its prefix length scaled to the family (an IPv4 `/8` ranks like an
//!    IPv6 `/32`); a single address is a full-length prefix;
//! 4. a host name (`localhost`) ranks as a full-length prefix, equal to the address.
//!
//! A peer has one family, so only patterns of that family match it: IPv4 patterns never
//! match IPv6 peers and the other way round. An IPv4 peer on a dual-stack socket
//! (`::ffff:a.b.c.d`) is the IPv4 peer `a.b.c.d`.
//!
//! # Names
//!
//! Name patterns need the peer's confirmed host names (reverse lookup, confirmed by a
//! forward lookup), which the daemon looks up off its event loop. `Rules::decide` asks
//! for them (`Decision::NeedNames`) only when a name match could change the outcome, so
//! a peer decided by its address alone costs no lookup. A name matches a domain suffix
//! when it lies strictly inside the domain: `www.example.com` is in `.example.com`,
//! `example.com` is not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One entry of `only_from` or `no_access`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Addresses whose first `prefix` bits equal `network`'s (its other bits are zero).
    Net { network: IpAddr, prefix: u8 },
    /// A host name, lowercase, without a trailing dot.
    Host(String),
    /// A domain suffix, lowercase, with its leading dot: `.example.com`.
    Domain(String),
}

/// Parses every word of an `only_from` or `no_access` list; the error names the first
/// bad word and what is wrong with it.
pub fn parse_patterns(words: &[String]) -> Result<Vec<Pattern>, String> {
    let mut patterns = Vec::new();
    for word in words {
        parse_word(word, &mut patterns).map_err(|message| format!("{word:?}: {message}"))?;
    }
    Ok(patterns)
}

fn parse_word(word: &str, out: &mut Vec<Pattern>) -> Result<(), String> {
    if word.is_empty() {
        return Err("empty entry".into());
    }
    if word.contains(['{', '}']) {
        return parse_factorized(word, out);
    }
    let pattern = if let Some((address, prefix)) = word.split_once('/') {
        parse_cidr(address, prefix)?
    } else if word.contains(':') {
        let address: Ipv6Addr = word.parse().map_err(|_| "not an IPv6 address")?;
        net(IpAddr::V6(address), 128)
    } else if let Some(domain) = word.strip_prefix('.') {
        let domain = host_name(domain)?;
        Pattern::Domain(format!(".{domain}"))
    } else if word.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let address: Ipv4Addr = word
            .parse()
            .map_err(|_| "not an IPv4 address: expected four numbers from 0 to 255")?;
        // xinetd.conf(5): trailing zero octets are wildcards, and 0.0.0.0 is everything.
        let zeros = address
            .octets()
            .iter()
            .rev()
            .take_while(|&&o| o == 0)
            .count();
        net(IpAddr::V4(address), 32 - 8 * zeros as u8)
    } else {
        Pattern::Host(host_name(word)?)
    };
    out.push(pattern);
    Ok(())
}

/// A network, with an IPv4-mapped IPv6 network turned into the IPv4 network, since
/// peers are compared in their canonical form.
fn net(network: IpAddr, prefix: u8) -> Pattern {
    if let IpAddr::V6(v6) = network
        && prefix >= 96
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Pattern::Net {
            network: IpAddr::V4(v4),
            prefix: prefix - 96,
        };
    }
    Pattern::Net { network, prefix }
}

fn parse_cidr(address: &str, prefix: &str) -> Result<Pattern, String> {
    let address: IpAddr = address.parse().map_err(|_| {
        format!(
            "{address:?} is not an IP address (a CIDR network is written 10.0.0.0/8 or fe80::/10)"
        )
    })?;
    let bits = bits(address);
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("prefix {prefix:?} is not a number"));
    }
    let prefix = match prefix.parse::<u8>() {
        Ok(prefix) if prefix <= bits => prefix,
        _ => return Err(format!("prefix longer than {bits}")),
    };
    let network = masked(address, prefix);
    if network != address {
        return Err(format!(
            "has host bits set; did you mean {network}/{prefix}?"
        ));
    }
    Ok(net(address, prefix))
}

/// `10.0.{1,2,5}`: one network per number in braces, each as long as the octets written.
fn parse_factorized(word: &str, out: &mut Vec<Pattern>) -> Result<(), String> {
    const FORM: &str = "a factorized address is written like 10.0.{1,2,5}";
    let (head, rest) = word.split_once('{').ok_or(FORM)?;
    let list = rest.strip_suffix('}').ok_or(FORM)?;
    if list.contains(['{', '}']) || (!head.is_empty() && !head.ends_with('.')) {
        return Err(FORM.into());
    }
    let mut octets = Vec::new();
    if let Some(head) = head.strip_suffix('.') {
        for part in head.split('.') {
            octets.push(octet(part)?);
        }
    }
    if octets.len() > 3 {
        return Err("more than four numbers".into());
    }
    if list.is_empty() {
        return Err("nothing between the braces".into());
    }
    let prefix = 8 * (octets.len() as u8 + 1);
    for part in list.split(',') {
        let mut address = [0u8; 4];
        address[..octets.len()].copy_from_slice(&octets);
        address[octets.len()] = octet(part)?;
        out.push(Pattern::Net {
            network: IpAddr::V4(Ipv4Addr::from(address)),
            prefix,
        });
    }
    Ok(())
}

fn octet(text: &str) -> Result<u8, String> {
    let valid = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    match text.parse::<u8>() {
        Ok(octet) if valid => Ok(octet),
        _ => Err(format!("{text:?} is not a number from 0 to 255")),
    }
}

/// Validates and lowercases a host name; a trailing dot (fully qualified) is dropped.
fn host_name(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 253 {
        return Err("name longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label in name (two dots in a row?)".into());
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters".into());
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(format!(
                "{c:?} is not allowed in a host name (letters, digits, '-' and '_')"
            ));
        }
    }
    Ok(name.to_ascii_lowercase())
}

fn bits(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `address` with all but its first `prefix` bits cleared.
fn masked(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// How specific a match is; the derived order is the ranking (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Everything,
    Domain(usize),
    /// A prefix length scaled to 128 bits: IPv4 /8 is 32; an address or host is 128.
    Prefix(u8),
}

const FULL: Specificity = Specificity::Prefix(128);

impl Pattern {
    /// How specific a match of the (canonical) address `peer` is, if it matches.
    fn match_address(&self, peer: IpAddr) -> Option<Specificity> {
        let Pattern::Net { network, prefix } = *self else {
            return None;
        };
        if network.is_ipv4() != peer.is_ipv4() || masked(peer, prefix) != network {
            return None;
        }
        Some(match prefix {
            0 => Specificity::Everything,
            _ => Specificity::Prefix(prefix * (128 / bits(peer))),
        })
    }

    /// How specific a match of one of `names` is, if one matches.
    fn match_names(&self, names: &[String]) -> Option<Specificity> {
        let name_matches = |want: &dyn Fn(&str) -> bool| {
            names
                .iter()
                .map(|name| name.strip_suffix('.').unwrap_or(name))
                .any(|name| want(&name.to_ascii_lowercase()))
        };
        match self {
            Pattern::Net { .. } => None,
            Pattern::Host(host) => name_matches(&|name| name == host).then_some(FULL),
            Pattern::Domain(domain) => name_matches(&|name| name.ends_with(domain.as_str()))
                .then(|| Specificity::Domain(domain.matches('.').count())),
        }
    }

    /// The most specific a name match of this pattern could be.
    fn name_specificity(&self) -> Option<Specificity> {
        match self {
            Pattern::Net { .. } => None,
            Pattern::Host(_) => Some(FULL),
            Pattern::Domain(domain) => Some(Specificity::Domain(domain.matches('.').count())),
        }
    }

    fn is_name(&self) -> bool {
        !matches!(self, Pattern::Net { .. })
    }
}

/// A service's `only_from` (None when unset) and `no_access` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub only_from: Option<Vec<Pattern>>,
    pub no_access: Vec<Pattern>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// The peer's confirmed host names could change the outcome: look them up and ask
    /// again with `Some(names)` (an empty list when the lookup fails or times out).
    NeedNames,
}

impl Rules {
    /// Decides for `peer`, given its confirmed host names when they have been looked up.
    /// With `names = Some(..)` the answer is never `NeedNames`.
    pub fn decide(&self, peer: IpAddr, names: Option<&[String]>) -> Decision {
        let peer = peer.to_canonical();
        let set = self.only_from.is_some();
        let only_from = self.only_from.as_deref().unwrap_or_default();
        let no_access = &self.no_access[..];
        match names {
            Some(names) => {
                let best = |list: &[Pattern]| {
                    best_match(list, |p| p.match_address(peer).max(p.match_names(names)))
                };
                match verdict(set, best(only_from), best(no_access)) {
                    true => Decision::Allow,
                    false => Decision::Deny,
                }
            }
            None => {
                // Allowing only gets likelier as the only_from match grows and less
                // likely as the no_access match grows, so these two extremes tell
                // whether some name match could change the outcome.
                let known = |list: &[Pattern]| best_match(list, |p| p.match_address(peer));
                let could_be = |list: &[Pattern]| {
                    best_match(list, |p| p.match_address(peer).max(p.name_specificity()))
                };
                let could_allow = verdict(set, could_be(only_from), known(no_access));
                let could_deny = !verdict(set, known(only_from), could_be(no_access));
                match (could_allow, could_deny) {
                    (true, true) => Decision::NeedNames,
                    (true, false) => Decision::Allow,
                    (false, _) => Decision::Deny,
                }
            }
        }
    }

    /// Whether some pattern is a host name or a domain, so deciding may need a lookup.
    pub fn uses_names(&self) -> bool {
        self.only_from
            .iter()
            .flatten()
            .chain(&self.no_access)
            .any(Pattern::is_name)
    }

    /// No rules at all: everyone is allowed and the daemon skips the check.
    pub fn is_open(&self) -> bool {
        self.only_from.is_none() && self.no_access.is_empty()
    }
}

fn best_match(
    list: &[Pattern],
    each: impl Fn(&Pattern) -> Option<Specificity>,
) -> Option<Specificity> {
    list.iter().filter_map(each).max()
}

/// xinetd's rule, given the best match in each list: true allows.
fn verdict(only_from_set: bool, only: Option<Specificity>, no: Option<Specificity>) -> bool {
    match (only, no) {
        (Some(only), Some(no)) => only > no,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => !only_from_set,
    }
}

/// `access_times`: the minutes of the day in which the service may be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTimes {
    /// Minutes since midnight, both ends included; `start > end` crosses midnight.
    ranges: Vec<(u16, u16)>,
}

impl AccessTimes {
    /// Parses `["08:00-17:00", "22:00-02:00"]`; the error names the first bad word.
    pub fn parse(words: &[String]) -> Result<AccessTimes, String> {
        if words.is_empty() {
            return Err("access_times needs at least one range".into());
        }
        let ranges = words
            .iter()
            .map(|word| parse_range(word).map_err(|message| format!("{word:?}: {message}")))
            .collect::<Result<_, _>>()?;
        Ok(AccessTimes { ranges })
    }

    /// Whether `minute_of_day` (0 is midnight, 1439 is 23:59) lies in some range.
    pub fn admits(&self, minute_of_day: u16) -> bool {
        self.ranges.iter().any(|&(start, end)| {
            if start <= end {
                (start..=end).contains(&minute_of_day)
            } else {
                minute_of_day >= start || minute_of_day <= end
            }
        })
    }
}

fn parse_range(word: &str) -> Result<(u16, u16), String> {
    let (start, end) = word
        .split_once('-')
        .ok_or("a range is written HH:MM-HH:MM, like 08:00-17:00")?;
    let start = parse_time(start)?;
    // xinetd's own example ends a range at 24:00: the end of the day.
    let end = if end == "24:00" {
        23 * 60 + 59
    } else {
        parse_time(end)?
    };
    Ok((start, end))
}

fn parse_time(text: &str) -> Result<u16, String> {
    let form = || format!("{text:?} is not a time: write HH:MM, like 08:00");
    let (hour, minute) = text.split_once(':').ok_or_else(form)?;
    let number = |part: &str| {
        let digits = (1..=2).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| part.parse::<u16>().ok()).flatten()
    };
    let (hour, minute) = (
        number(hour).ok_or_else(form)?,
        number(minute).ok_or_else(form)?,
    );
    if hour > 23 {
        return Err(format!("hour {hour} is out of range (0-23)"));
    }
    if minute > 59 {
        return Err(format!("minute {minute} is out of range (0-59)"));
    }
    Ok(hour * 60 + minute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    fn net(text: &str) -> Pattern {
        let (network, prefix) = text.split_once('/').unwrap();
        Pattern::Net {
            network: network.parse().unwrap(),
            prefix: prefix.parse().unwrap(),
        }
    }

    /// `syntax!("word" => "10.0.0.0/8" "host:h" "domain:.d")`: what one word parses to.
    macro_rules! syntax {
        ($word:literal => $($want:literal)+) => {
            let want: Vec<Pattern> = [$($want),+]
                .iter()
                .map(|w| match w.split_once(':') {
                    Some(("host", name)) => Pattern::Host(name.to_string()),
                    Some(("domain", name)) => Pattern::Domain(name.to_string()),
                    _ => net(w),
                })
                .collect();
            assert_eq!(parse_patterns(&[$word.to_string()]), Ok(want), "{}", $word);
        };
    }

    /// `syntaxerr!("word" => "part of the message")`.
    macro_rules! syntaxerr {
        ($word:literal => $needle:literal) => {
            let message = parse_patterns(&[$word.to_string()]).unwrap_err();
            assert!(message.contains($needle), "{}: {message}", $word);
            assert!(
                message.starts_with(&format!("{:?}: ", $word)),
                "{}: {message}",
                $word
            );
        };
    }

    #[test]
    fn patterns() {
        syntax!("127.0.0.1" => "127.0.0.1/32");
        syntax!("10.0.0.0" => "10.0.0.0/8");
        syntax!("128.138.12.0" => "128.138.12.0/24");
        syntax!("128.0.12.0" => "128.0.12.0/24");
        syntax!("0.0.0.0" => "0.0.0.0/0");
        syntax!("0.0.0.1" => "0.0.0.1/32");
        syntax!("10.0.{1,2,5}" => "10.0.1.0/24" "10.0.2.0/24" "10.0.5.0/24");
        syntax!("10.{1,2}" => "10.1.0.0/16" "10.2.0.0/16");
        syntax!("10.{0}" => "10.0.0.0/16");
        syntax!("10.1.2.{3,255}" => "10.1.2.3/32" "10.1.2.255/32");
        syntax!("{10,11}" => "10.0.0.0/8" "11.0.0.0/8");
        syntax!("192.168.1.0/24" => "192.168.1.0/24");
        syntax!("10.1.2.3/32" => "10.1.2.3/32");
        syntax!("10.0.0.0/32" => "10.0.0.0/32");
        syntax!("0.0.0.0/0" => "0.0.0.0/0");
        syntax!("::1" => "::1/128");
        syntax!("::1/128" => "::1/128");
        syntax!("fe80::/10" => "fe80::/10");
        syntax!("::/0" => "::/0");
        syntax!("::ffff:10.0.0.0/104" => "10.0.0.0/8");
        syntax!("::ffff:10.1.2.3" => "10.1.2.3/32");
        syntax!("::ffff:0.0.0.0/96" => "0.0.0.0/0");
        syntax!("localhost" => "host:localhost");
        syntax!("Host.Example.COM" => "host:host.example.com");
        syntax!("host.example.com." => "host:host.example.com");
        syntax!("my_host-1" => "host:my_host-1");
        syntax!(".example.com" => "domain:.example.com");
        syntax!(".Example.Com." => "domain:.example.com");
    }

    #[test]
    fn pattern_errors() {
        syntaxerr!("" => "empty entry");
        syntaxerr!("10.0.0.0/33" => "prefix longer than 32");
        syntaxerr!("::/129" => "prefix longer than 128");
        syntaxerr!("10.0.0.0/300" => "prefix longer than 32");
        syntaxerr!("10.0.0.0/" => "is not a number");
        syntaxerr!("10.0.0.0/+8" => "is not a number");
        syntaxerr!("10.0.0.1/8" => "has host bits set; did you mean 10.0.0.0/8?");
        syntaxerr!("fe80::1/10" => "did you mean fe80::/10?");
        syntaxerr!("::ffff:0:0/80" => "did you mean ::/80?");
        syntaxerr!("10.0/8" => "is not an IP address");
        syntaxerr!("host/8" => "is not an IP address");
        syntaxerr!("10.0.0" => "expected four numbers");
        syntaxerr!("10.0.0.256" => "expected four numbers");
        syntaxerr!("10.0.0.0.0" => "expected four numbers");
        syntaxerr!("010.0.0.1" => "expected four numbers");
        syntaxerr!("fe80::1%eth0" => "not an IPv6 address");
        syntaxerr!("1:2:3" => "not an IPv6 address");
        syntaxerr!("10.0.{1,2" => "factorized address is written");
        syntaxerr!("10.0.1,2}" => "factorized address is written");
        syntaxerr!("10.0.{1}.2" => "factorized address is written");
        syntaxerr!("10.0{1}" => "factorized address is written");
        syntaxerr!("10.0.{{1}}" => "factorized address is written");
        syntaxerr!("10.0.{}" => "nothing between the braces");
        syntaxerr!("10.0.{1,,2}" => "\"\" is not a number");
        syntaxerr!("10.0.{1,256}" => "\"256\" is not a number from 0 to 255");
        syntaxerr!("10.0.{01}" => "\"01\" is not a number");
        syntaxerr!("10.x.{1}" => "\"x\" is not a number");
        syntaxerr!("1.2.3.4.{5}" => "more than four numbers");
        syntaxerr!("." => "empty name");
        syntaxerr!("a..b" => "empty label");
        syntaxerr!("..example.com" => "empty label");
        syntaxerr!("*.example.com" => "'*' is not allowed");
        syntaxerr!("host name" => "' ' is not allowed");
    }

    #[test]
    fn first_bad_word_is_named() {
        let message = parse_patterns(&words("127.0.0.1 10.0.0.0/33 300.0.0.0")).unwrap_err();
        assert_eq!(message, "\"10.0.0.0/33\": prefix longer than 32");
        assert_eq!(parse_patterns(&[]), Ok(vec![]));
    }

    fn decide(only: Option<&str>, no: &str, peer: &str, names: Option<&[&str]>) -> Decision {
        let rules = Rules {
            only_from: only.map(|text| parse_patterns(&words(text)).unwrap()),
            no_access: parse_patterns(&words(no)).unwrap(),
        };
        let names: Option<Vec<String>> =
            names.map(|names| names.iter().map(|n| n.to_string()).collect());
        rules.decide(peer.parse().unwrap(), names.as_deref())
    }

    /// `case!(only_from, no_access, peer, names => Decision)`; `only_from` None is unset.
    macro_rules! case {
        ($only:expr, $no:literal, $peer:literal, $names:expr => $want:ident) => {
            let only: Option<&str> = $only;
            assert_eq!(
                decide(only, $no, $peer, $names),
                Decision::$want,
                "only_from={:?} no_access={:?} peer={} names={:?}",
                only,
                $no,
                $peer,
                $names
            );
        };
    }

    const NONE: Option<&[&str]> = None;
    const NO_NAMES: Option<&[&str]> = Some(&[]);

    #[test]
    fn addresses() {
        case!(None, "", "10.1.2.3", NONE => Allow);
        case!(Some(""), "", "10.1.2.3", NONE => Deny);
        case!(Some(""), "", "::1", NO_NAMES => Deny);
        case!(Some("10.0.0.0"), "", "10.1.2.3", NONE => Allow);
        case!(Some("10.0.0.0"), "", "11.1.2.3", NONE => Deny);
        case!(Some("127.0.0.1"), "", "127.0.0.1", NONE => Allow);
        case!(Some("127.0.0.1"), "", "127.0.0.2", NONE => Deny);
        case!(None, "10.0.0.0/8", "10.1.2.3", NONE => Deny);
        case!(None, "10.0.0.0/8", "11.1.2.3", NONE => Allow);
        // The more specific match wins, whichever list it is in.
        case!(Some("10.0.0.0/8"), "10.1.0.0/16", "10.1.2.3", NONE => Deny);
        case!(Some("10.0.0.0/8"), "10.1.0.0/16", "10.2.2.3", NONE => Allow);
        case!(Some("10.1.2.3"), "10.0.0.0/8", "10.1.2.3", NONE => Allow);
        case!(Some("10.1.2.3"), "10.0.0.0/8", "10.1.2.4", NONE => Deny);
        case!(Some("0.0.0.0"), "10.0.0.0", "10.1.2.3", NONE => Deny);
        case!(Some("0.0.0.0"), "10.0.0.0", "11.1.2.3", NONE => Allow);
        // Equally specific in both lists: denied.
        case!(Some("10.0.0.0/8"), "10.0.0.0", "10.1.2.3", NONE => Deny);
        case!(Some("::1"), "::1/128", "::1", NONE => Deny);
        // Matching neither list: denied when only_from is set.
        case!(Some("10.0.0.0/8"), "11.0.0.0/8", "12.1.2.3", NONE => Deny);
        case!(Some(""), "11.0.0.0/8", "12.1.2.3", NONE => Deny);
        // The best match of each list counts, not the first.
        case!(Some("10.0.0.0/8 10.1.2.0/24"), "10.1.0.0/16", "10.1.2.3", NONE => Allow);
        case!(Some("10.1.2.0/24 10.0.0.0/8"), "10.1.0.0/16 10.1.2.3", "10.1.2.3", NONE => Deny);
        case!(Some("10.0.{1,2,5}"), "", "10.0.5.9", NONE => Allow);
        case!(Some("10.0.{1,2,5}"), "", "10.0.3.9", NONE => Deny);
    }

    #[test]
    fn families() {
        case!(Some("127.0.0.1"), "", "::ffff:127.0.0.1", NONE => Allow);
        case!(Some("::ffff:127.0.0.0/104"), "", "127.9.9.9", NONE => Allow);
        case!(Some("0.0.0.0"), "", "::1", NONE => Deny);
        case!(Some("::/0"), "", "127.0.0.1", NONE => Deny);
        case!(Some("::/0"), "", "::ffff:127.0.0.1", NONE => Deny);
        case!(None, "0.0.0.0/0", "::1", NONE => Allow);
        case!(Some("fe80::/10"), "", "fe80::1", NONE => Allow);
        case!(Some("fe80::/10"), "", "fec0::1", NONE => Deny);
        case!(Some("::/0"), "2001:db8::/32", "2001:db8::1", NONE => Deny);
        case!(Some("2001:db8::/48"), "2001:db8::/32", "2001:db8::1", NONE => Allow);
        // A v4 /8 ranks like a v6 /32 (a peer only meets one family; this is the scale).
        assert_eq!(
            net("10.0.0.0/8").match_address("10.1.1.1".parse().unwrap()),
            net("2001:db8::/32").match_address("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn names() {
        let host: Option<&[&str]> = Some(&["host.example.com"]);
        let other: Option<&[&str]> = Some(&["other.example.org"]);
        case!(Some("localhost"), "", "127.0.0.1", NONE => NeedNames);
        case!(Some("localhost"), "", "127.0.0.1", Some(&["localhost"][..]) => Allow);
        case!(Some("localhost"), "", "127.0.0.1", NO_NAMES => Deny);
        case!(Some("host.example.com"), "", "10.1.2.3", host => Allow);
        case!(Some("host.example.com"), "", "10.1.2.3", Some(&["HOST.example.com."][..]) => Allow);
        case!(Some("host.example.com"), "", "10.1.2.3", other => Deny);
        case!(Some(".example.com"), "", "10.1.2.3", host => Allow);
        case!(Some(".example.com"), "", "10.1.2.3", Some(&["example.com"][..]) => Deny);
        case!(Some(".example.com"), "", "10.1.2.3", Some(&["badexample.com"][..]) => Deny);
        case!(None, ".example.com", "10.1.2.3", host => Deny);
        case!(None, ".example.com", "10.1.2.3", other => Allow);
        case!(None, ".example.com", "10.1.2.3", NONE => NeedNames);
        // An address match that no name match could beat needs no lookup.
        case!(Some("10.1.2.3 localhost"), "", "10.1.2.3", NONE => Allow);
        case!(Some("10.0.0.0/8"), ".example.com", "10.1.2.3", NONE => Allow);
        case!(Some("10.0.0.0/8"), ".example.com", "11.1.2.3", NONE => Deny);
        case!(Some(".example.com"), "10.0.0.0/8", "10.1.2.3", NONE => Deny);
        case!(Some("10.1.2.3"), "host.example.com", "10.1.2.4", NONE => Deny);
        // ...but one that a name match could tie or beat does.
        case!(Some("10.1.2.3"), "host.example.com", "10.1.2.3", NONE => NeedNames);
        case!(Some("10.1.2.3"), "host.example.com", "10.1.2.3", host => Deny);
        case!(Some("10.1.2.3"), "host.example.com", "10.1.2.3", other => Allow);
        case!(Some("10.0.0.0/8 host.example.com"), "10.1.0.0/16", "10.1.2.3", NONE => NeedNames);
        case!(Some("10.0.0.0/8 host.example.com"), "10.1.0.0/16", "10.1.2.3", host => Allow);
        case!(Some("10.0.0.0/8 host.example.com"), "10.1.0.0/16", "10.1.2.3", other => Deny);
        // A domain beats /0 and loses to any other prefix; more labels beat fewer.
        case!(Some(".example.com"), "0.0.0.0", "10.1.2.3", host => Allow);
        case!(Some("0.0.0.0"), ".example.com", "10.1.2.3", host => Deny);
        case!(Some(".example.com"), "10.0.0.0/8", "10.1.2.3", host => Deny);
        case!(Some("0.0.0.0/1"), ".example.com", "10.1.2.3", host => Allow);
        case!(Some(".a.example.com"), ".example.com", "10.1.2.3", Some(&["x.a.example.com"][..]) => Allow);
        case!(Some(".example.com"), ".a.example.com", "10.1.2.3", Some(&["x.a.example.com"][..]) => Deny);
        case!(Some(".example.com"), ".example.org", "10.1.2.3", Some(&["a.example.com", "a.example.org"][..]) => Deny);
        // A host name ranks as a full address: a tie denies.
        case!(Some("host.example.com"), "10.1.2.3", "10.1.2.3", host => Deny);
        case!(Some("host.example.com"), "10.1.2.0/24", "10.1.2.3", host => Allow);
    }

    #[test]
    fn rules_flags() {
        let rules = |only: Option<&str>, no: &str| Rules {
            only_from: only.map(|text| parse_patterns(&words(text)).unwrap()),
            no_access: parse_patterns(&words(no)).unwrap(),
        };
        assert!(rules(None, "").is_open());
        assert!(!rules(Some(""), "").is_open());
        assert!(!rules(None, "::1").is_open());
        assert!(!rules(Some("10.0.0.0/8"), "::1").uses_names());
        assert!(rules(Some("localhost"), "").uses_names());
        assert!(rules(None, ".example.com").uses_names());
    }

    fn times(text: &str) -> AccessTimes {
        AccessTimes::parse(&words(text)).unwrap()
    }

    /// `times!("ranges", "HH:MM" => admitted)`.
    macro_rules! times {
        ($ranges:literal, $at:literal => $want:literal) => {
            let minute = parse_time($at).unwrap();
            assert_eq!(
                times($ranges).admits(minute),
                $want,
                "{} at {}",
                $ranges,
                $at
            );
        };
    }

    macro_rules! timeserr {
        ($ranges:literal => $needle:literal) => {
            let message = AccessTimes::parse(&words($ranges)).unwrap_err();
            assert!(message.contains($needle), "{}: {message}", $ranges);
        };
    }

    #[test]
    fn access_times() {
        times!("08:00-17:00", "08:00" => true);
        times!("08:00-17:00", "12:30" => true);
        times!("08:00-17:00", "17:00" => true);
        times!("08:00-17:00", "17:01" => false);
        times!("08:00-17:00", "07:59" => false);
        times!("8:00-9:5", "9:05" => true);
        times!("22:00-02:00", "23:59" => true);
        times!("22:00-02:00", "00:00" => true);
        times!("22:00-02:00", "02:00" => true);
        times!("22:00-02:00", "02:01" => false);
        times!("22:00-02:00", "21:59" => false);
        times!("08:00-12:00 13:00-17:00", "12:30" => false);
        times!("08:00-12:00 13:00-17:00", "13:00" => true);
        times!("00:00-23:59", "00:00" => true);
        times!("00:00-23:59", "23:59" => true);
        times!("12:00-12:00", "12:00" => true);
        times!("12:00-12:00", "12:01" => false);
        times!("12:00-24:00", "23:59" => true);
        times!("12:00-24:00", "00:00" => false);
    }

    #[test]
    fn access_time_errors() {
        timeserr!("" => "access_times needs at least one range");
        timeserr!("24:00-01:00" => "\"24:00-01:00\": hour 24 is out of range (0-23)");
        timeserr!("08:60-09:00" => "minute 60 is out of range (0-59)");
        timeserr!("08:00" => "a range is written HH:MM-HH:MM");
        timeserr!("08:00-" => "\"\" is not a time");
        timeserr!("0800-0900" => "\"0800\" is not a time");
        timeserr!("08:00-09:000" => "\"09:000\" is not a time");
        timeserr!("-1:00-02:00" => "is not a time");
        timeserr!("08:00-17:00 nine-five" => "\"nine-five\": ");
    }
}
