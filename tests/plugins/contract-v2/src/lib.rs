//! A component exporting `auditflow:plugin/stage@2.0.0`: the host (contract 1.x) must refuse
//! it with a message naming both versions.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "transform" });

    struct V2;

    impl exports::auditflow::plugin::stage::Guest for V2 {
        fn init(_config: String) -> Result<(), String> {
            Ok(())
        }
        fn process(events: Vec<String>) -> Vec<String> {
            events
        }
    }

    export!(V2);
}
