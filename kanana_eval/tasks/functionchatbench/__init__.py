"""FunctionChat-Bench (kakao/FunctionChat-Bench): the data loader of its two versions."""
