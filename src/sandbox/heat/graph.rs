//! The dependency graph between a stack's resources, its creation order and Heat's message when
//! it has a cycle (heat/engine/dependencies.py).

use super::error::HeatError;

/// Resources are indices (template order); `requires[i]` lists what `i` needs created first.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    requires: Vec<Vec<usize>>,
}

impl Graph {
    pub fn new(len: usize) -> Graph {
        Graph {
            requires: vec![Vec::new(); len],
        }
    }

    /// `from` needs `to` (ignores self-loops' duplicates, keeps a self-loop as a cycle).
    pub fn add(&mut self, from: usize, to: usize) {
        if let Some(edges) = self.requires.get_mut(from)
            && !edges.contains(&to)
        {
            edges.push(to);
            edges.sort_unstable();
        }
    }

    pub fn requires(&self, i: usize) -> &[usize] {
        self.requires.get(i).map_or(&[], Vec::as_slice)
    }

    pub fn required_by(&self, i: usize) -> Vec<usize> {
        (0..self.requires.len())
            .filter(|j| self.requires[*j].contains(&i))
            .collect()
    }

    /// A creation order: each resource after everything it requires, ties in template order.
    /// `labels[i]` names resource `i` in the cycle message (`Server "web"`, as Heat prints it).
    pub fn order(&self, labels: &[String]) -> Result<Vec<usize>, HeatError> {
        let len = self.requires.len();
        let mut done = vec![false; len];
        let mut order = Vec::with_capacity(len);
        while order.len() < len {
            let next = (0..len).find(|i| !done[*i] && self.requires[*i].iter().all(|r| done[*r]));
            match next {
                Some(i) => {
                    done[i] = true;
                    order.push(i);
                }
                None => {
                    // What remains is the cycle and whatever waits on it, as Heat's graph shows.
                    let label = |i: usize| labels.get(i).cloned().unwrap_or_else(|| i.to_string());
                    let nodes: Vec<String> = (0..len)
                        .filter(|i| !done[*i])
                        .map(|i| {
                            let reqs: Vec<String> = self.requires[i]
                                .iter()
                                .filter(|r| !done[**r])
                                .map(|r| label(*r))
                                .collect();
                            format!("{}: {{{}}}", label(i), reqs.join(", "))
                        })
                        .collect();
                    return Err(HeatError::CircularDependency(format!(
                        "{{{}}}",
                        nodes.join(", ")
                    )));
                }
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("Server \"{n}\"")).collect()
    }

    #[test]
    fn order_puts_requirements_first_and_keeps_template_order_for_ties() {
        let mut g = Graph::new(4);
        g.add(0, 2); // a needs c
        g.add(1, 0); // b needs a
        assert_eq!(
            g.order(&labels(&["a", "b", "c", "d"])).unwrap(),
            [2, 0, 1, 3]
        );
        assert_eq!(g.required_by(0), [1]);
    }

    #[test]
    fn cycles_are_reported_like_heat() {
        let mut g = Graph::new(3);
        g.add(0, 1);
        g.add(1, 0);
        g.add(2, 0);
        let err = g.order(&labels(&["a", "b", "c"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Circular Dependency Found: {Server \"a\": {Server \"b\"}, Server \"b\": {Server \"a\"}, \
             Server \"c\": {Server \"a\"}}"
        );
        let mut g = Graph::new(1);
        g.add(0, 0);
        assert!(g.order(&labels(&["a"])).is_err());
    }
}
