"""Use cases over storage, vision and the model: enrol, identify, strangers, versions, compatibility APIs."""
