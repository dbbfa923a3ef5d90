"""Models that answer and judges that rate: the backends shared by the AI feedback and evaluation stages.

- :mod:`.backends`  chat backends: a local transformers model (batched), an OpenAI-compatible HTTP endpoint,
                    a Python function.
- :mod:`.judges`    judges on top of a backend or a function: UltraFeedback ratings, MT-Bench grades,
                    pairwise preferences; replies parsed robustly, retried, failures recorded. Its pieces:
                    :mod:`.judge_base` (what every judge is), :mod:`.replies` (the reply parsers),
                    :mod:`.judge_prompts`, and the judge types :mod:`.function_judge`, :mod:`.model_judge`,
                    :mod:`.reward_judge`.
- :mod:`.store`     append-only JSONL records so that no model or judge is ever asked twice.
- :mod:`.listwise`  the groups in which a listwise judge rates a prompt's answers together.
- :mod:`.ultrafeedback`  UltraFeedback's own annotation protocol (judge protocol: ultrafeedback), registered here;
                    its published requests and readers are :mod:`.ultrafeedback_protocol`.
"""

from . import ultrafeedback  # noqa: F401  (registers protocol ultrafeedback for every judge spec)
