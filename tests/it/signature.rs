//! The signature of any body under any secret is the one SavvyCal's docs tell a receiver to expect:
//! checked by the embedded receiver's own verification, written from the docs, not by the crate's
//! signing code, so the two cannot share a mistake.

use proptest::prelude::*;

use crate::util::documented_signature;

proptest! {
    #[test]
    fn any_body_is_signed_as_savvycal_documents(body in prop::collection::vec(any::<u8>(), 0..2048), secret in ".{1,80}") {
        let sig = savvy_replay::signature::sign(secret.as_bytes(), &body);
        prop_assert_eq!(&sig, &documented_signature(&secret, &body));
        let mut tampered = body.clone();
        tampered.push(b' ');
        prop_assert_ne!(&sig, &documented_signature(&secret, &tampered));
    }
}
