"""`distill serve`: the fine-tuned student with its retrieval, as one OpenAI-compatible
endpoint. assistant (retrieval, the grounded prompt, citations), students (the student
loaded here, queued, or an upstream server), wire (OpenAI's request, reply, chunk and
error formats), app (the HTTP server). See docs/serving.md."""
