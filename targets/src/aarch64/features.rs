//! CPU features the microkernels choose variants by, read from HWCAP at load.
//!
//! `BFLY_AARCH64_FEATURES` (a comma list of `dotprod`, `fp16`, `i8mm`, or `none`) limits
//! the detected set, so the fallback variants can be forced on a CPU that has everything;
//! naming a feature the CPU lacks is an error (it would fault with SIGILL). For `inspect`
//! on any host, features come from the target string (`aarch64+dotprod+fp16`).

use std::fmt;

/// The environment knob that restricts detected features.
pub const FEATURES_ENV: &str = "BFLY_AARCH64_FEATURES";

/// Optional ISA extensions beyond ARMv8.0 Advanced SIMD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuFeatures {
    /// FEAT_DotProd: `SDOT`/`UDOT` (int8 GEMM).
    pub dotprod: bool,
    /// FEAT_FP16: half-precision arithmetic (`FMLA .8h`).
    pub fp16: bool,
    /// FEAT_I8MM: `SMMLA` (recorded; no kernel uses it yet).
    pub i8mm: bool,
}

impl CpuFeatures {
    /// Plain ARMv8.0 NEON.
    pub const BASELINE: CpuFeatures = CpuFeatures {
        dotprod: false,
        fp16: false,
        i8mm: false,
    };

    /// What this CPU has, from the kernel's HWCAP words (none off aarch64).
    pub fn detect() -> CpuFeatures {
        #[cfg(target_arch = "aarch64")]
        {
            CpuFeatures {
                dotprod: std::arch::is_aarch64_feature_detected!("dotprod"),
                fp16: std::arch::is_aarch64_feature_detected!("fp16"),
                i8mm: std::arch::is_aarch64_feature_detected!("i8mm"),
            }
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            CpuFeatures::BASELINE
        }
    }

    /// The detected features, limited by `BFLY_AARCH64_FEATURES` when it is set.
    pub fn from_env() -> Result<CpuFeatures, String> {
        let detected = CpuFeatures::detect();
        match std::env::var(FEATURES_ENV) {
            Ok(v) => detected.restrict(&v),
            Err(_) => Ok(detected),
        }
    }

    /// Keeps only the features `list` names (`none`, or a comma list); naming one this set
    /// lacks is an error.
    pub fn restrict(self, list: &str) -> Result<CpuFeatures, String> {
        let wanted = parse_list(list, FEATURES_ENV)?;
        for (name, want, have) in [
            ("dotprod", wanted.dotprod, self.dotprod),
            ("fp16", wanted.fp16, self.fp16),
            ("i8mm", wanted.i8mm, self.i8mm),
        ] {
            if want && !have {
                return Err(format!(
                    "{FEATURES_ENV}={list}: this CPU has no {name} (it has {self}); the \
                     variable can only turn detected features off"
                ));
            }
        }
        Ok(wanted)
    }

    /// Parses a target (`aarch64`, `aarch64+dotprod`, `aarch64+dotprod+fp16+i8mm`).
    pub fn parse_target(target: &str) -> Result<CpuFeatures, String> {
        let mut parts = target.split('+');
        if parts.next() != Some("aarch64") {
            return Err(format!(
                "unknown target `{target}`: expected `aarch64` with optional `+dotprod`, \
                 `+fp16`, `+i8mm` (e.g. `aarch64+dotprod+fp16`)"
            ));
        }
        let rest: Vec<&str> = parts.collect();
        if rest.is_empty() {
            return Ok(CpuFeatures::BASELINE);
        }
        parse_list(&rest.join(","), target)
    }
}

fn parse_list(list: &str, what: &str) -> Result<CpuFeatures, String> {
    let mut f = CpuFeatures::BASELINE;
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "none" => {}
            "dotprod" => f.dotprod = true,
            "fp16" => f.fp16 = true,
            "i8mm" => f.i8mm = true,
            other => {
                return Err(format!(
                    "{what}: unknown feature `{other}` (known: dotprod, fp16, i8mm, none)"
                ));
            }
        }
    }
    Ok(f)
}

impl fmt::Display for CpuFeatures {
    /// `neon`, `neon+dotprod+fp16`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("neon")?;
        for (on, name) in [
            (self.dotprod, "dotprod"),
            (self.fp16, "fp16"),
            (self.i8mm, "i8mm"),
        ] {
            if on {
                write!(f, "+{name}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_restricts() {
        let all = CpuFeatures::parse_target("aarch64+dotprod+fp16+i8mm").unwrap();
        assert!(all.dotprod && all.fp16 && all.i8mm);
        assert_eq!(
            CpuFeatures::parse_target("aarch64").unwrap(),
            CpuFeatures::BASELINE
        );
        assert!(CpuFeatures::parse_target("x86_64").is_err());
        assert!(
            CpuFeatures::parse_target("aarch64+sve")
                .unwrap_err()
                .contains("sve")
        );
        let some = all.restrict("fp16").unwrap();
        assert!(some.fp16 && !some.dotprod);
        assert_eq!(all.restrict("none").unwrap(), CpuFeatures::BASELINE);
        let err = CpuFeatures::BASELINE.restrict("dotprod").unwrap_err();
        assert!(err.contains("has no dotprod"), "{err}");
        assert_eq!(all.to_string(), "neon+dotprod+fp16+i8mm");
    }
}
