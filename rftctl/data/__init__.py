"""Problems, data sources, prompt templates and the grader.

problems.py    Problem record; jsonl read/write (atomic)
procedural.py  seeded arithmetic / word problems + worked solutions (the tiny model's SFT data)
sources.py     SOURCES registry: procedural, aime24, aime25, amc23, math500, gsm8k, dapo,
dapo_holdout
overlap.py     normalised-text dedup and the train/eval contamination table
prompts.py     TEMPLATES registry (plain, chat) and render_prompt
grading.py     answer extraction, fast numeric/string comparison, math-verify in a timed worker pool
"""
