"""Config plumbing: schemas, key roles, value checks, the trust registry for stored
configs, and the fingerprint that tells whether two configs are the same run."""
