"""Wire protocols over the service: the seed's JSON routes, image uploads, the Open Inference
Protocol. Each is a small adapter beside its codec (``codecs/<same name>.py``): it resolves
the version, runs the codec and the model, and shapes the answer, knowing nothing of HTTP."""
