//! placeholder: the test forge (issue 3)
