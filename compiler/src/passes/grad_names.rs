//! How `autodiff` names the gradient outputs it appends and how `optimizer` finds them again.
//!
//! Value names in the IR text are identifiers (no dots), so the gradient of `@layers.0.attn.q.theta`
//! is the output `%grad_layers_0_attn_q_theta`. The mapping is not injective in general
//! (`a.b_c` and `a_b.c` collide); `autodiff` rejects a model where two trainable params
//! collide and `optimizer` resolves each name against the trainable params, so a collision
//! can never pair a gradient with the wrong param.

use bfly_ir::Output;

const PREFIX: &str = "grad_";

/// `%grad_NAME` with the dots of the param name replaced by `_`.
pub fn grad_output_name(param: &str) -> String {
    format!("{PREFIX}{}", param.replace('.', "_"))
}

/// Is this one of the gradient outputs `autodiff` appends?
pub fn is_grad_output(o: &Output) -> bool {
    !o.param && o.name.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers() {
        assert_eq!(
            grad_output_name("layers.0.attn.q.theta"),
            "grad_layers_0_attn_q_theta"
        );
        assert_eq!(grad_output_name("embed.weight"), "grad_embed_weight");
    }
}
