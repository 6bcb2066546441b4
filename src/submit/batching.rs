//! Forming batches bounded by orders and by operations.

use super::target::PlannedOrder;

/// Orders that go into one request.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub orders: Vec<PlannedOrder>,
    pub operations: usize,
}

/// Split planned orders into batches of at most `max_orders` orders and `max_operations`
/// operations, keeping the input order. An order that alone exceeds `max_operations` is
/// returned in the second list (it can never be sent in one request).
pub fn form_batches(
    planned: Vec<PlannedOrder>,
    max_orders: usize,
    max_operations: usize,
) -> (Vec<BatchPlan>, Vec<PlannedOrder>) {
    let mut batches = Vec::new();
    let mut too_big = Vec::new();
    let mut current = BatchPlan {
        orders: Vec::new(),
        operations: 0,
    };
    for order in planned {
        if order.operations > max_operations {
            too_big.push(order);
            continue;
        }
        if !current.orders.is_empty()
            && (current.orders.len() >= max_orders
                || current.operations + order.operations > max_operations)
        {
            batches.push(std::mem::replace(
                &mut current,
                BatchPlan {
                    orders: Vec::new(),
                    operations: 0,
                },
            ));
        }
        current.operations += order.operations;
        current.orders.push(order);
    }
    if !current.orders.is_empty() {
        batches.push(current);
    }
    (batches, too_big)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn planned(id: i64, ops: usize) -> PlannedOrder {
        PlannedOrder {
            order_id: id,
            dynamics_key: format!("k{id}"),
            operations: ops,
            payload: crate::submit::target::TargetPayload::empty(),
        }
    }

    #[test]
    fn splits_by_operations_before_order_count() {
        let orders = vec![
            planned(1, 600),
            planned(2, 300),
            planned(3, 200),
            planned(4, 1),
        ];
        let (batches, too_big) = form_batches(orders, 50, 1000);
        assert!(too_big.is_empty());
        let ids: Vec<Vec<i64>> = batches
            .iter()
            .map(|b| b.orders.iter().map(|o| o.order_id).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 2], vec![3, 4]]);
        assert_eq!(batches[0].operations, 900);
    }

    #[test]
    fn an_order_larger_than_a_batch_is_set_aside() {
        let (batches, too_big) = form_batches(vec![planned(1, 1001), planned(2, 3)], 10, 1000);
        assert_eq!(too_big.len(), 1);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].orders[0].order_id, 2);
    }

    proptest! {
        #[test]
        fn every_order_lands_once_within_bounds(ops in proptest::collection::vec(1usize..1200, 0..200),
                                                 max_orders in 1usize..60) {
            let orders: Vec<_> = ops.iter().enumerate().map(|(i, &o)| planned(i as i64, o)).collect();
            let (batches, too_big) = form_batches(orders, max_orders, 1000);
            let mut seen: Vec<i64> = batches.iter().flat_map(|b| b.orders.iter().map(|o| o.order_id)).collect();
            seen.extend(too_big.iter().map(|o| o.order_id));
            seen.sort();
            prop_assert_eq!(seen, (0..ops.len() as i64).collect::<Vec<_>>());
            for b in &batches {
                prop_assert!(b.orders.len() <= max_orders);
                prop_assert!(b.operations <= 1000);
                prop_assert_eq!(b.operations, b.orders.iter().map(|o| o.operations).sum::<usize>());
            }
        }
    }
}
