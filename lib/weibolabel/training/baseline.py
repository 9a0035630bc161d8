"""The classical baseline scored under the same folds: character n-gram TF-IDF + logistic regression."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

DESCRIPTION = "char 1-3-gram TF-IDF (sublinear tf) + logistic regression (C=10)"


def tfidf_logreg_probs(
    train_texts: list[str], train_labels: np.ndarray, test_texts: list[str], num_labels: int, class_weighted: bool
) -> np.ndarray:
    """Class probabilities [n_test, num_labels] from a model fitted on the training texts only."""
    pipeline = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=1),
        LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced" if class_weighted else None),
    )
    pipeline.fit(train_texts, train_labels)
    probs = np.zeros((len(test_texts), num_labels), dtype=np.float32)
    probs[:, pipeline.classes_] = pipeline.predict_proba(test_texts)
    return probs
