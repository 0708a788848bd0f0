"""FunctionChat-Bench scoring: exact match of tool calls, the rubric judge, sub-scores."""
