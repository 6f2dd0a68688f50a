import math
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from answer import embed_text, reply  # noqa: E402


class AnswerTest(unittest.TestCase):
    def test_replies_with_the_prompt_after_the_prefix(self):
        self.assertEqual(reply("> ", "hello"), "> hello")

    def test_an_embedding_has_the_asked_dimensions_and_length_1(self):
        v = embed_text("hello", 8)
        self.assertEqual(len(v), 8)
        self.assertAlmostEqual(math.sqrt(sum(x * x for x in v)), 1.0)


if __name__ == "__main__":
    unittest.main()
