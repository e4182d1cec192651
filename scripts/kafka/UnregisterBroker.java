// SPDX-License-Identifier: MPL-2.0
//
// Asks the controller to forget a running broker (Admin.unregisterBroker,
// which librdkafka lacks). Until restarted, the broker answers clients with
// no broker listed, as a fenced broker does. Run by scripts/kafka.sh
// unregister-node: java -cp "<broker jars>/*" UnregisterBroker.java HOST:PORT ID

import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class UnregisterBroker {
    public static void main(String[] args) throws Exception {
        Properties properties = new Properties();
        properties.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        try (Admin admin = Admin.create(properties)) {
            admin.unregisterBroker(Integer.parseInt(args[1])).all().get();
        }
    }
}
