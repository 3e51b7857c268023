"""From a class pair to judged images: selection, sentences, rendering, judging."""
