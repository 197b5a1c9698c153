"""Sparse autoencoders on captured activations: architectures, training, metrics, feature cards, SAELens format.

``tether sae train`` (:func:`tether.interp.sae.train.run_sae_train`), ``tether sae eval``
(:func:`tether.interp.sae.metrics.run_sae_eval`) and ``tether sae cards``
(:func:`tether.interp.sae.cards.run_sae_cards`); configs in :mod:`tether.interp.sae.config`.
"""
