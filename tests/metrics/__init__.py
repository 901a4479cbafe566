"""Tests of segsort_ext.metrics. A package, so that module names such as test_bad_inputs may
repeat in other tests/ folders."""
